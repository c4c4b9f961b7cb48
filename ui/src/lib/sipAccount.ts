// Checks of Settings → Phone's plain SIP account as the person types it, with the same rules
// the agent library applies when it saves (crates/agent/src/settings.rs): the window says
// what is wrong before anything is sent.
import type { MessageKey } from "../i18n/en";
import type { PhoneSettings, PhoneSettingsView, SipAccountSettings, SipTransport } from "../ipc";

/** The shell's Settings → Phone commands (tests pass their own). */
export type PhoneSettingsApi = {
  get: () => Promise<PhoneSettingsView>;
  save: (phone: PhoneSettings, password: string | null) => Promise<PhoneSettingsView>;
  /** Forgets the kept password; the phone goes back to the router's account. */
  forget: () => Promise<PhoneSettingsView>;
};

export type SipField = "registrar" | "user" | "auth_user" | "display_name" | "password";
export type SipProblems = Partial<Record<SipField, MessageKey>>;

const USER = /^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]{1,128}$/;
const HOST = /^[A-Za-z0-9.-]{1,253}$/;

/** What is wrong with the registrar, or null. */
export function registrarProblem(typed: string, transport: SipTransport): MessageKey | null {
  const t = typed.trim();
  if (t === "") return "error.sip_registrar_empty";
  const m = /^(sips?):(.*)$/.exec(t);
  if (!m) return "error.sip_registrar_scheme";
  if (m[1] === "sips" && transport !== "tls") return "error.sip_registrar_tls";
  const [hostport = "", ...params] = (m[2] ?? "").split(";");
  // A ;transport= the Transport field disagrees with (or one we do not speak): which is meant
  // is not ours to guess; the app says so, as the agent's settings check does.
  for (const p of params) {
    const eq = p.indexOf("=");
    const name = (eq < 0 ? p : p.slice(0, eq)).trim().toLowerCase();
    if (name !== "transport") continue;
    const value = (eq < 0 ? "" : p.slice(eq + 1)).trim().toLowerCase();
    if (value !== transport) return "error.sip_registrar_transport";
  }
  let host: string;
  let port: string | null = null;
  if (hostport.startsWith("[")) {
    const end = hostport.indexOf("]");
    if (end < 0) return "error.sip_registrar_host";
    host = hostport.slice(1, end);
    if (!/^[0-9A-Fa-f:.]+$/.test(host)) return "error.sip_registrar_host";
    const after = hostport.slice(end + 1);
    if (after !== "") {
      if (!after.startsWith(":")) return "error.sip_registrar_host";
      port = after.slice(1);
    }
  } else {
    const i = hostport.lastIndexOf(":");
    host = i < 0 ? hostport : hostport.slice(0, i);
    port = i < 0 ? null : hostport.slice(i + 1);
    if (!HOST.test(host)) return "error.sip_registrar_host";
  }
  if (port !== null) {
    const n = /^\d{1,5}$/.test(port) ? Number(port) : NaN;
    if (!(n >= 1 && n <= 65535)) return "error.sip_registrar_port";
  }
  return null;
}

function nameProblem(name: string | null): MessageKey | null {
  const n = (name ?? "").trim();
  // eslint-disable-next-line no-control-regex
  return n.length > 128 || /["\\\u0000-\u001f\u007f]/.test(n) ? "error.sip_name_invalid" : null;
}

/**
 * Every problem of the account; `password` is what was typed (empty: keep the kept one,
 * which `passwordKept` says exists).
 */
export function sipAccountProblems(a: SipAccountSettings, password: string, passwordKept: boolean): SipProblems {
  const p: SipProblems = {};
  const r = registrarProblem(a.registrar, a.transport);
  if (r) p.registrar = r;
  const user = a.user.trim();
  if (user === "") p.user = "error.sip_user_empty";
  else if (!USER.test(user)) p.user = "error.sip_user_invalid";
  const au = nameProblem(a.auth_user);
  if (au) p.auth_user = au;
  const dn = nameProblem(a.display_name);
  if (dn) p.display_name = dn;
  if (password === "" && !passwordKept) p.password = "error.sip_password_needed";
  // eslint-disable-next-line no-control-regex
  else if (password.length > 256 || /[\u0000-\u001f\u007f]/.test(password)) p.password = "error.sip_password_invalid";
  return p;
}

/** The account as it is sent: trimmed, blank optional fields as null. */
export function cleanAccount(a: SipAccountSettings): SipAccountSettings {
  const opt = (s: string | null) => (s ?? "").trim() || null;
  return {
    registrar: a.registrar.trim(),
    user: a.user.trim(),
    auth_user: opt(a.auth_user),
    display_name: opt(a.display_name),
    transport: a.transport,
  };
}
