// placeholder: being written
export function __placeholder_path(): void {}
