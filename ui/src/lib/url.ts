import type { MessageKey } from "../i18n/index.svelte";

/** Checks a router address as typed; returns the message key of the problem, or null. */
export function routerUrlProblem(input: string): MessageKey | null {
  const s = input.trim();
  if (!s) return "error.url_empty";
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return "error.url_invalid";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "error.url_scheme";
  if (!url.hostname || url.search || url.hash) return "error.url_invalid";
  return null;
}
