// Run-time switchable UI language. `t()` reads reactive state, so every string rendered
// through it updates the moment the language changes — no reload.
import en, { type MessageKey } from "./en";
import zhCN from "./zh-CN";
import type { IpcError, Language } from "../ipc/types";

export type { MessageKey };

export const dictionaries: Record<Language, Record<MessageKey, string>> = { en, "zh-CN": zhCN };
export const languages: { value: Language; label: string }[] = [
  { value: "en", label: "English" },
  { value: "zh-CN", label: "中文（简体）" },
];

const state = $state<{ lang: Language }>({ lang: "en" });

export function language(): Language {
  return state.lang;
}

export function setLanguage(lang: Language): void {
  state.lang = lang;
  if (typeof document !== "undefined") document.documentElement.lang = lang;
}

/** The current language's text for `key`, with `{name}` placeholders filled from `params`. */
export function t(key: MessageKey, params: Record<string, string | number> = {}): string {
  const text = dictionaries[state.lang][key] ?? en[key];
  return text.replace(/\{(\w+)\}/g, (m, name: string) => (name in params ? String(params[name]) : m));
}

/** A person-facing message for an IPC error: localised by its code, else its own text. */
export function errorText(e: IpcError): string {
  const key = `error.${e.code}` as MessageKey;
  return key in en ? t(key) : t("error.unknown", { message: e.message });
}
