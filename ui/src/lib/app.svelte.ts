// The app's live state: settings and the router link, filled from the desktop shell.
import * as ipc from "../ipc";
import type { IpcError, Language, RouterStatus, Settings } from "../ipc";
import { setLanguage } from "../i18n/index.svelte";

export const app = $state<{
  settings: Settings | null;
  status: RouterStatus | null;
  loadError: IpcError | null;
  /** Bumped when the settings change other than by the Settings page's own Save (the
   *  header's language button): the page is made again from them. Its own Save keeps the
   *  page, so that it can say "Settings saved." */
  settingsEpoch: number;
}>({ settings: null, status: null, loadError: null, settingsEpoch: 0 });

/** Loads settings and status and follows status changes. */
export async function startApp(): Promise<void> {
  if (!ipc.insideDesktopApp()) return;
  await ipc.onRouterStatus((s) => (app.status = s));
  try {
    const [settings, status] = await Promise.all([ipc.getSettings(), ipc.getRouterStatus()]);
    app.settings = settings;
    setLanguage(settings.language);
    app.status ??= status;
  } catch (e) {
    app.loadError = e as IpcError;
  }
}

/** Saves settings through the shell; the language applies at once. Throws IpcError. */
export async function saveSettings(next: Settings): Promise<Settings> {
  const saved = await ipc.saveSettings(next);
  app.settings = saved;
  setLanguage(saved.language);
  return saved;
}

/** Switches the language now and remembers it. */
export async function switchLanguage(lang: Language): Promise<void> {
  setLanguage(lang);
  if (app.settings) {
    await saveSettings({ ...app.settings, language: lang });
    app.settingsEpoch += 1;
  }
}
