import { describe, expect, it, beforeEach, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import TransferPicker from "./TransferPicker.svelte";
import { setLanguage } from "../i18n/index.svelte";
import type { PhoneApi } from "./phone";
import { targets } from "./fixtures.test-data";

function api(over: Partial<PhoneApi> = {}): PhoneApi {
  return {
    phoneTargets: vi.fn(async () => targets),
    phoneTransfer: vi.fn(async (t: string) => `transfer to ${t}`),
    phoneConsult: vi.fn(async (t: string) => `consult with ${t}`),
    ...over,
  } as unknown as PhoneApi;
}

const row = (testid: string, key: string, value: string) =>
  document.querySelector(`[data-testid="${testid}"][data-${key}="${value}"]`) as HTMLElement | null;

describe("the transfer and consult picker", () => {
  beforeEach(() => setLanguage("en"));

  it("shows queues with callers waiting, colleagues with their state, and only experts free now", async () => {
    render(TransferPicker, { api: api(), onclose: vi.fn(), ondone: vi.fn() });
    await screen.findAllByTestId("target-queue");
    expect(row("target-queue", "name", "billing")?.textContent).toContain("2 waiting · 1 ready");
    expect(row("target-queue", "name", "billing")?.textContent).toContain("your queue");
    // A queue is consulted where some of its agents are logged in; where callers wait (or
    // nobody is Ready) the button says the consultation will wait in it.
    const billingConsult = row("target-queue", "name", "billing")?.querySelector('[data-testid="consult"]');
    expect(billingConsult?.getAttribute("title")).toContain("waits in the queue");
    expect(row("target-queue", "name", "orders")?.querySelector('[data-testid="consult"]')).toBeNull();
    expect(row("target-queue", "name", "support")?.querySelector('[data-testid="consult"]')?.hasAttribute("title")).toBe(false);
    // Alex is on a call: shown, but nothing to press.
    const alex = row("target-colleague", "upn", "AlexW@contoso.example")!;
    expect(alex.textContent).toContain("On a call");
    expect(alex.textContent).toContain("cannot take a call now");
    expect(alex.querySelector("button")).toBeNull();
    // Megan: Consult and Transfer, and the same in Teams (she has a Teams number).
    const megan = row("target-colleague", "upn", "MeganB@contoso.example")!;
    expect(megan.querySelectorAll("button").length).toBe(4);
    expect(megan.querySelector('[data-testid="consult-teams"]')?.textContent).toBe("Consult in Teams");
    expect(row("target-colleague", "upn", "LynneR@contoso.example")?.querySelector('[data-testid="consult-teams"]')).toBeNull();
    // Lynne is Not ready: a consultation, but no blind transfer.
    const lynne = row("target-colleague", "upn", "LynneR@contoso.example")!;
    expect(lynne.querySelector('[data-testid="consult"]')).toBeTruthy();
    expect(lynne.querySelector('[data-testid="transfer"]')).toBeNull();
    // Experts: Megan free in escalations; nobody in legal.
    expect(row("target-expert", "upn", "MeganB@contoso.example")?.textContent).toContain("level 4");
    // One expert: consult only (the group's Transfer takes its best free expert).
    expect(row("target-expert", "upn", "MeganB@contoso.example")?.querySelector('[data-testid="transfer"]')).toBeNull();
    expect(row("target-group", "name", "escalations")?.querySelector('[data-testid="transfer"]')).toBeTruthy();
    expect(row("target-group", "name", "legal")?.textContent).toContain("Nobody free now");
    expect(row("target-group", "name", "legal")?.querySelector("button")).toBeNull();
    expect(screen.getByTestId("picker-number")).toBeTruthy();
  });

  it("searches across sections", async () => {
    render(TransferPicker, { api: api(), onclose: vi.fn(), ondone: vi.fn() });
    await screen.findAllByTestId("target-queue");
    await fireEvent.input(screen.getByTestId("picker-search"), { target: { value: "megan" } });
    await vi.waitFor(() => expect(screen.queryAllByTestId("target-queue")).toHaveLength(0));
    expect(screen.getAllByTestId("target-colleague")).toHaveLength(1);
    expect(screen.getAllByTestId("target-expert")).toHaveLength(1);
    await fireEvent.input(screen.getByTestId("picker-search"), { target: { value: "zzz" } });
    expect(await screen.findByTestId("picker-empty")).toBeTruthy();
  });

  it("transfers blind, consults, and says a refusal", async () => {
    const ondone = vi.fn();
    const refusing = api({
      phoneConsult: vi.fn(async () => {
        throw { code: "target_unavailable", message: "409 Conflict: megan is busy" };
      }),
    });
    render(TransferPicker, { api: refusing, onclose: vi.fn(), ondone });
    await screen.findAllByTestId("target-queue");
    await fireEvent.click(row("target-queue", "name", "orders")!.querySelector('[data-testid="transfer"]')!);
    expect(refusing.phoneTransfer).toHaveBeenCalledWith("orders");
    await vi.waitFor(() => expect(ondone).toHaveBeenCalledWith("transfer", "transfer to orders"));
    await fireEvent.click(row("target-group", "name", "escalations")!.querySelector('[data-testid="consult"]')!);
    expect(refusing.phoneConsult).toHaveBeenCalledWith("escalations");
    expect((await screen.findByTestId("picker-error")).textContent).toContain("nobody of the group or queue is free");
    await fireEvent.click(row("target-queue", "name", "support")!.querySelector('[data-testid="consult"]')!);
    expect(refusing.phoneConsult).toHaveBeenLastCalledWith("support");
    const megan = row("target-colleague", "upn", "MeganB@contoso.example")!;
    await fireEvent.click(megan.querySelector('[data-testid="consult-teams"]')!);
    expect(refusing.phoneConsult).toHaveBeenLastCalledWith("teams:MeganB@contoso.example");
    await fireEvent.click(megan.querySelector('[data-testid="transfer-teams"]')!);
    expect(refusing.phoneTransfer).toHaveBeenLastCalledWith("teams:MeganB@contoso.example");
    // The group in Teams: its best free expert with a Teams number.
    const group = row("target-group", "name", "escalations")!;
    await fireEvent.click(group.querySelector('[data-testid="consult-teams"]')!);
    expect(refusing.phoneConsult).toHaveBeenLastCalledWith("teams:escalations");
    await fireEvent.click(group.querySelector('[data-testid="transfer-teams"]')!);
    expect(refusing.phoneTransfer).toHaveBeenLastCalledWith("teams:escalations");
    expect(row("target-group", "name", "legal")?.querySelector('[data-testid="consult-teams"]')).toBeNull();
    await fireEvent.input(screen.getByTestId("picker-number"), { target: { value: "+15550001234" } });
    await fireEvent.click(screen.getByTestId("consult-number"));
    expect(refusing.phoneConsult).toHaveBeenLastCalledWith("+15550001234");
    await fireEvent.click(screen.getByTestId("transfer-number"));
    expect(refusing.phoneTransfer).toHaveBeenLastCalledWith("+15550001234");
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByText("同事")).toBeTruthy());
  });

  it("in a conference offers only people and queues to consult", async () => {
    render(TransferPicker, { api: api(), onclose: vi.fn(), ondone: vi.fn(), consultOnly: true });
    await screen.findAllByTestId("target-queue");
    expect(screen.getAllByTestId("target-queue").map((q) => q.dataset.name)).toEqual(["billing", "support"]);
    expect(screen.queryAllByTestId("target-attendant")).toHaveLength(0);
    expect(document.querySelector('[data-testid="target-queue"] [data-testid="transfer"]')).toBeNull();
    expect(row("target-queue", "name", "support")?.querySelector('[data-testid="consult"]')).toBeTruthy();
    // An outside number may be consulted, then brought in; never transferred to from here.
    expect(screen.getByTestId("picker-number")).toBeTruthy();
    expect(screen.queryByTestId("transfer-number")).toBeNull();
  });

  it("offers no number field where outside numbers are not allowed", async () => {
    render(TransferPicker, {
      api: api({ phoneTargets: vi.fn(async () => ({ ...targets, outside_numbers: false })) }),
      onclose: vi.fn(),
      ondone: vi.fn(),
    });
    await screen.findAllByTestId("target-queue");
    expect(screen.queryByTestId("picker-number")).toBeNull();
  });
});
