/**
 * The error every REST call of the sidebar throws: the server's message and the HTTP status (0 when
 * the server could not be reached). Its own module so the model and its tests need no JupyterLab.
 */
export class SandboxApiError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

/** The words a person is shown for a failed call: the server's message, or the error as it is. */
export function errorText(error: unknown): string {
  return error instanceof SandboxApiError ? error.message : String(error);
}
