import { describe, expect, it } from "vitest";
import { routerUrlProblem } from "./url";

describe("routerUrlProblem", () => {
  it("accepts http and https addresses", () => {
    expect(routerUrlProblem("http://127.0.0.1:7700")).toBeNull();
    expect(routerUrlProblem(" https://router.contoso.com ")).toBeNull();
  });
  it("names what is wrong", () => {
    expect(routerUrlProblem("")).toBe("error.url_empty");
    expect(routerUrlProblem("   ")).toBe("error.url_empty");
    expect(routerUrlProblem("ftp://x")).toBe("error.url_scheme");
    expect(routerUrlProblem("not a url")).toBe("error.url_invalid");
    expect(routerUrlProblem("http://h/?q=1")).toBe("error.url_invalid");
  });
});
