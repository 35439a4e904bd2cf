// placeholder: being written
export function __placeholder_conditional(): void {}
