// placeholder: being written
export function __placeholder_date(): void {}
