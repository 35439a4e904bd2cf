// placeholder until the HTTP state machine lands
export function httpInit(): void {}
export function httpOpen(fd: i32): void {}
export function httpRun(fd: i32): void {}
export function httpComplete(fd: i32, op: i32, res: i32): void {}
export function httpOpenComplete(fd: i32, res: i32): void {}
export function httpTimeout(fd: i32): void {}
