/** The server's built-in tools (docs/api.md, Agents). */
export const BUILTIN_TOOLS = [
  { name: 'calculator', description: 'Arithmetic expressions' },
  { name: 'current_time', description: 'Date and time in a time zone' },
  { name: 'http_fetch', description: 'GET a public web page' },
] as const;
