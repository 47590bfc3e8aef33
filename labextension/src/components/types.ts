/**
 * What the components need from the shell besides the model: opening things in JupyterLab's
 * main area, which only the application can do.
 */
export interface ISidebarCommands {
  /** Open a file of the sandbox in an editor tab (path relative to the home, or absolute). */
  openFile: (sandboxId: string, path: string) => void;
  /** Open a terminal into the sandbox in the main area. */
  openTerminal: (sandboxId: string) => void;
}
