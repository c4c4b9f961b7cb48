import { describe, expect, it, beforeEach } from "vitest";
import { dictionaries, errorText, language, setLanguage, t } from "./index.svelte";

describe("i18n", () => {
  beforeEach(() => setLanguage("en"));

  it("has every English key in Chinese, and nothing else", () => {
    const en = Object.keys(dictionaries.en).sort();
    const zh = Object.keys(dictionaries["zh-CN"]).sort();
    expect(zh).toEqual(en);
    for (const k of zh) expect(dictionaries["zh-CN"][k as keyof typeof dictionaries.en]).not.toBe("");
  });

  it("fills placeholders and leaves unknown ones visible", () => {
    expect(t("status.retry", { attempt: 3, seconds: 2 })).toBe("attempt 3, next try in 2 s");
    expect(t("status.version", {})).toBe("v{version}");
  });

  it("switches language at run time and sets <html lang>", () => {
    expect(t("status.connected")).toBe("Connected");
    setLanguage("zh-CN");
    expect(language()).toBe("zh-CN");
    expect(t("status.connected")).toBe("已连接");
    expect(document.documentElement.lang).toBe("zh-CN");
  });

  it("localises IPC errors by code, and falls back to the message", () => {
    setLanguage("zh-CN");
    expect(errorText({ code: "invalid_router_url", message: "x" })).toContain("地址无效");
    setLanguage("en");
    expect(errorText({ code: "something_new", message: "disk on fire" })).toBe("Something went wrong: disk on fire");
  });
});
