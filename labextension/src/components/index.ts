export { FilesSection } from './FilesSection';
export { GitSection } from './GitSection';
export { Header } from './Header';
export { NetworkSection } from './NetworkSection';
export { PreviewsSection } from './PreviewsSection';
export { SandboxActions } from './SandboxActions';
export { SandboxView } from './SandboxView';
export { StatusSection } from './StatusSection';
export type { ISidebarCommands } from './types';
