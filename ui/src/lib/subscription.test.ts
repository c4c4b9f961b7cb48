import { describe, expect, it, vi } from "vitest";
import { subscribe } from "./subscription";

describe("subscribe", () => {
  it("ends a subscription set up before or after the end was asked for", async () => {
    const early = vi.fn();
    const endEarly = subscribe(async () => early);
    endEarly();
    await vi.waitFor(() => expect(early).toHaveBeenCalledTimes(1));

    const late = vi.fn();
    const endLate = subscribe(async () => late);
    await Promise.resolve();
    await Promise.resolve();
    expect(late).not.toHaveBeenCalled();
    endLate();
    expect(late).toHaveBeenCalledTimes(1);
  });
});
