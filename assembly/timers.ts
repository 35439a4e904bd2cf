// placeholder: being written
export function __placeholder_timers(): void {}
