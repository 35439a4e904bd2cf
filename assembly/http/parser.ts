// placeholder: being written
export function __placeholder_parser(): void {}
