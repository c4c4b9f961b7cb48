import { describe, expect, it, beforeEach, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import Phone from "./Phone.svelte";
import { setLanguage } from "../i18n/index.svelte";
import type { CallView, PhoneView, WrapUpView } from "../ipc";
import { targets } from "./fixtures.test-data";
import { charCount, clock, countdown, monitorOffer, secondsLeft, shortcutOf, type PhoneApi } from "./phone";

const idle = (over: Partial<PhoneView> = {}): PhoneView => ({
  agent: "AdeleV@contoso.example",
  registration: { state: "registered", aor: "sip:agent-x@contoso.example" },
  call: null,
  wrap_up: null,
  problem: null,
  volume: 80,
  consult: null,
  source: "router",
  device: null,
  ...over,
});

const wrapUp = (over: Partial<WrapUpView> = {}): WrapUpView => ({
  queue: "general",
  call_record: "c-1",
  dispositions: ["resolved", "callback"],
  ends_unix_ms: null,
  after: null,
  ...over,
});

const ringing = (over: Partial<CallView> = {}): CallView => ({
  id: 7,
  stage: "ringing",
  from: "<sip:+15551230000@127.0.0.1>",
  offer: { queue: "billing", call_record: "c-1", caller: "+15551230000", dialled: "+18005550100", choices: "main:1", waited: 75, monitor: null },
  ringing_since_unix_ms: Date.now() - 3000,
  answered_unix_ms: null,
  muted: false,
  held: false,
  codec: null,
  outgoing: false,
  transfer_ask: null,
  ...over,
});

function fakeApi(first: PhoneView) {
  let push: (v: PhoneView) => void = () => {};
  let link: (t: string) => void = () => {};
  const api: PhoneApi = {
    phoneStatus: vi.fn(async () => first),
    onPhone: vi.fn(async (h: (v: PhoneView) => void) => {
      push = h;
      return () => {};
    }),
    phoneConnect: vi.fn(async () => first),
    phoneDial: vi.fn(async () => 9),
    phoneTargets: vi.fn(async () => targets),
    phoneTransfer: vi.fn(async (t: string) => `transfer by adele@contoso.example to ${t}`),
    phoneConsult: vi.fn(async (t: string) => `consult by adele@contoso.example with ${t}`),
    phoneConsultStep: vi.fn(async (s: string) => `consult ${s}`),
    phoneHistory: vi.fn(async () => []),
    phoneAnswer: vi.fn(async () => {}),
    phoneReject: vi.fn(async () => {}),
    phoneHangup: vi.fn(async () => {}),
    phoneTransferAnswer: vi.fn(async () => {}),
    phoneHold: vi.fn(async () => {}),
    phoneMute: vi.fn(async () => {}),
    phoneDtmf: vi.fn(async () => {}),
    phoneVolume: vi.fn(async () => {}),
    phoneQuality: vi.fn(async () => ({
      packets_sent: 100, packets_received: 98, packets_lost: 2, jitter_ms: 3.4, concealed_ms: 0, late: 0,
      dropped: 0, mos: 4.31, rtt_ms: null, rtcp_received: 1, srtp_auth_failures: 0, srtp_unencrypted: 0,
      fec_recovered: 0, opus_bitrate: null, dtx_frames: 0,
    })),
    phoneWrapUp: vi.fn(async () => {}),
    takeLink: vi.fn(async () => null),
    onLink: vi.fn(async (h: (t: string) => void) => {
      link = h;
      return () => {};
    }),
  };
  return { api, push: (v: PhoneView) => push(v), link: (t: string) => link(t) };
}

describe("the phone in the window", () => {
  beforeEach(() => setLanguage("en"));

  it("puts a tel: or sip: link into the dial box and calls only when the person presses Call", async () => {
    const { api, link } = fakeApi(idle());
    vi.mocked(api.takeLink).mockResolvedValueOnce("+1-201-555-0123");
    render(Phone, { api });
    const input = (await screen.findByTestId("dial-input")) as HTMLInputElement;
    // The link the app was started with, taken once.
    await vi.waitFor(() => expect(input.value).toBe("+1-201-555-0123"));
    expect(screen.getByTestId("dial-link-note").textContent).toContain("press Call");
    expect(api.phoneDial).not.toHaveBeenCalled();
    // A link opened while the app runs replaces it.
    link("MeganB@contoso.example");
    await vi.waitFor(() => expect(input.value).toBe("MeganB@contoso.example"));
    // ... and is taken from the shell, so it does not come back when the panel is next shown.
    expect(api.takeLink).toHaveBeenCalledTimes(2);
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("dial-link-note").textContent).toContain("核对号码"));
    await fireEvent.click(screen.getByTestId("dial-call"));
    expect(api.phoneDial).toHaveBeenCalledWith("MeganB@contoso.example");
    // Typing something else: no longer the link's.
    await fireEvent.input(input, { target: { value: "+1555" } });
    expect(screen.queryByTestId("dial-link-note")).toBeNull();
  });

  it("dials a number or a name typed or keyed in, once registered", async () => {
    const { api, push } = fakeApi(idle({ registration: { state: "registering" } }));
    render(Phone, { api });
    const input = (await screen.findByTestId("dial-input")) as HTMLInputElement;
    await fireEvent.input(input, { target: { value: "MeganB" } });
    // Not registered: no call yet.
    expect((screen.getByTestId("dial-call") as HTMLButtonElement).disabled).toBe(true);
    push(idle());
    await vi.waitFor(() => expect((screen.getByTestId("dial-call") as HTMLButtonElement).disabled).toBe(false));
    await fireEvent.click(screen.getByTestId("dial-call"));
    expect(api.phoneDial).toHaveBeenLastCalledWith("MeganB");
    // The pad types into the box.
    await fireEvent.input(input, { target: { value: "" } });
    await fireEvent.click(screen.getByTestId("dial-pad-toggle"));
    for (const k of ["+", "1", "5", "5", "5"]) await fireEvent.click(screen.getByTestId(`pad-${k}`));
    expect(input.value).toBe("+1555");
    await fireEvent.submit(input.form!);
    expect(api.phoneDial).toHaveBeenLastCalledWith("+1555");
    // Something that is no number or name is not sent.
    await fireEvent.input(input, { target: { value: "a<b>" } });
    expect((screen.getByTestId("dial-call") as HTMLButtonElement).disabled).toBe(true);
  });

  it("puts a transfer the other party asks for to the person, who follows or declines it", async () => {
    const { api, push } = fakeApi(idle());
    render(Phone, { api });
    await vi.waitFor(() => expect(api.onPhone).toHaveBeenCalled());
    const talking = ringing({ stage: "talking", answered_unix_ms: Date.now() - 5_000 });
    push(idle({ call: talking }));
    await screen.findByTestId("in-call");
    expect(screen.queryByTestId("transfer-ask")).toBeNull();
    const ask = { target: "sip:carol@elsewhere.example", why: "the target (sip:carol@elsewhere.example) is not of the account's domain contoso.example" };
    push(idle({ call: { ...talking, transfer_ask: ask } }));
    const text = await screen.findByTestId("transfer-ask-text");
    expect(text.textContent).toBe("The other party asks to transfer this call to sip:carol@elsewhere.example.");
    expect(text.getAttribute("title")).toContain("not of the account's domain");
    await fireEvent.click(screen.getByTestId("transfer-ask-decline"));
    expect(api.phoneTransferAnswer).toHaveBeenLastCalledWith(7, false);
    await fireEvent.click(screen.getByTestId("transfer-ask-follow"));
    expect(api.phoneTransferAnswer).toHaveBeenLastCalledWith(7, true);
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("transfer-ask-follow").textContent).toBe("接受转接"));
    // Answered: the question goes away with the view that no longer asks it.
    push(idle({ call: talking }));
    await vi.waitFor(() => expect(screen.queryByTestId("transfer-ask")).toBeNull());
  });

  it("shows a call it placed ringing, then connected, and cancels it", async () => {
    const { api, push } = fakeApi(idle());
    render(Phone, { api });
    await vi.waitFor(() => expect(api.onPhone).toHaveBeenCalled());
    const out = ringing({ id: 9, stage: "calling", outgoing: true, from: "", offer: { queue: null, call_record: null, caller: null, dialled: "MeganB", choices: null, waited: null, monitor: null } });
    push(idle({ call: out }));
    expect((await screen.findByTestId("outgoing-status")).textContent).toBe("Calling MeganB…");
    expect(screen.queryByTestId("incoming")).toBeNull();
    expect(screen.queryByTestId("dialer")).toBeNull();
    push(idle({ call: { ...out, stage: "alerting" } }));
    await vi.waitFor(() => expect(screen.getByTestId("outgoing-status").textContent).toBe("Ringing at MeganB…"));
    await fireEvent.click(screen.getByTestId("outgoing-cancel"));
    expect(api.phoneHangup).toHaveBeenCalledWith(9);
    expect(api.phoneReject).not.toHaveBeenCalled();
    push(idle({ call: { ...out, stage: "talking", answered_unix_ms: Date.now() } }));
    expect((await screen.findByTestId("in-call-caller")).textContent).toBe("MeganB");
    expect(screen.queryByTestId("outgoing")).toBeNull();
  });

  it("transfers, consults and makes a three-way call with a typed number on a plain SIP account, with no picker (the router's)", async () => {
    const plain = (over: Partial<PhoneView> = {}) => idle({ agent: null, source: "sip_account", ...over });
    const { api, push } = fakeApi(plain());
    render(Phone, { api });
    await vi.waitFor(() => expect(api.onPhone).toHaveBeenCalled());
    const up = ringing({ stage: "talking", answered_unix_ms: Date.now() });
    push(plain({ call: up }));
    await screen.findByTestId("in-call");
    expect(screen.getByTestId("hangup")).toBeTruthy();
    expect(screen.queryByTestId("transfer-open")).toBeNull();
    expect(screen.queryByTestId("plain-transfer")).toBeNull();
    await fireEvent.click(screen.getByTestId("plain-transfer-open"));
    const go = screen.getByTestId("plain-transfer-go") as HTMLButtonElement;
    expect(go.disabled).toBe(true);
    // Nothing that could not be a number or an address is sent.
    await fireEvent.input(screen.getByTestId("plain-transfer-target"), { target: { value: "bob;evil=1" } });
    expect(go.disabled).toBe(true);
    await fireEvent.input(screen.getByTestId("plain-transfer-target"), { target: { value: " bob@pbx.example.com " } });
    expect(go.disabled).toBe(false);
    await fireEvent.click(go);
    expect(api.phoneTransfer).toHaveBeenCalledWith("bob@pbx.example.com");
    await vi.waitFor(() => expect(screen.queryByTestId("plain-transfer")).toBeNull());
    expect(screen.getByTestId("transfer-step").textContent).toContain("Done:");
    // A refused transfer leaves the call up and says so.
    push(plain({ call: up, problem: { code: "transfer_not_done", message: "the transfer did not go through (603 Decline …)" } }));
    expect((await screen.findByTestId("phone-problem")).textContent).toBe(
      "The transfer did not go through; the caller is still with you. Try another number, or transfer again.",
    );
    // Consult instead: the phone's own consultation, then a three-way call it mixes.
    await fireEvent.click(screen.getByTestId("plain-transfer-open"));
    await fireEvent.input(screen.getByTestId("plain-transfer-target"), { target: { value: "carol" } });
    await fireEvent.click(screen.getByTestId("plain-consult-go"));
    expect(api.phoneConsult).toHaveBeenCalledWith("carol");
    const carol = "sip:carol@pbx.example.com";
    push(plain({ call: { ...up, held: true }, consult: { with: carol, state: "ringing", conference: [] } }));
    expect((await screen.findByTestId("consult-status")).textContent).toBe(
      `Ringing ${carol}… the caller is on hold. If you hang up, both calls end.`,
    );
    expect((screen.getByTestId("plain-transfer-open") as HTMLButtonElement).disabled).toBe(true);
    push(plain({ call: { ...up, held: true }, consult: { with: carol, state: "talking", conference: [] } }));
    await vi.waitFor(() => expect((screen.getByTestId("consult-conference") as HTMLButtonElement).disabled).toBe(false));
    await fireEvent.click(screen.getByTestId("consult-conference"));
    expect(api.phoneConsultStep).toHaveBeenLastCalledWith("conference");
    push(plain({ call: up, consult: { with: carol, state: "conference", conference: [carol] } }));
    await vi.waitFor(() => expect(screen.getByTestId("consult-status").textContent).toBe(`Conference: you, ${carol} and the caller.`));
    // No one more: the phone mixes three.
    expect(screen.queryByTestId("conference-add")).toBeNull();
    expect(screen.queryByTestId("conference-full")).toBeNull();
    expect(screen.getByTestId("consult-complete").getAttribute("title")).toBe("The caller and the person talk on without you.");
    push(plain({ call: up }));
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("plain-transfer-open").textContent).toBe("转接"));
    setLanguage("en");
    // The same call through the router offers the picker instead.
    push(idle({ call: ringing({ stage: "talking", answered_unix_ms: Date.now() }) }));
    await screen.findByTestId("transfer-open");
    expect(screen.queryByTestId("plain-transfer-open")).toBeNull();
  });

  it("consults a colleague from the picker, then completes, conferences or cancels as the consultation goes", async () => {
    const { api, push } = fakeApi(idle());
    render(Phone, { api });
    await vi.waitFor(() => expect(api.onPhone).toHaveBeenCalled());
    const up = ringing({ stage: "talking", answered_unix_ms: Date.now() });
    push(idle({ call: up }));
    await fireEvent.click(await screen.findByTestId("transfer-open"));
    const megan = await screen.findByText("Megan Bowen", { selector: '[data-testid="target-colleague"] .name' });
    await fireEvent.click(megan.parentElement!.querySelector('[data-testid="consult"]')!);
    expect(api.phoneConsult).toHaveBeenCalledWith("MeganB@contoso.example");
    await vi.waitFor(() => expect(screen.queryByTestId("picker")).toBeNull());
    // The router's consultation drives the panel: a queue's waits in it (Cancel only), then
    // ringing (no Complete yet), then talking.
    push(idle({ call: up, consult: { with: "orders", state: "waiting", queue: "orders", conference: [] } }));
    expect((await screen.findByTestId("consult-status")).textContent).toBe(
      "Waiting in queue orders for its next free agent… you and the caller hear music. If you hang up, the caller waits in the queue.",
    );
    expect((screen.getByTestId("consult-complete") as HTMLButtonElement).disabled).toBe(true);
    expect((screen.getByTestId("consult-conference") as HTMLButtonElement).disabled).toBe(true);
    expect((screen.getByTestId("consult-cancel") as HTMLButtonElement).disabled).toBe(false);
    push(idle({ call: up, consult: { with: "MeganB@contoso.example", state: "ringing", conference: [] } }));
    expect((await screen.findByTestId("consult-status")).textContent).toBe(
      "Ringing MeganB@contoso.example… the caller hears music. If you hang up, they get the caller when they answer.",
    );
    expect((screen.getByTestId("consult-complete") as HTMLButtonElement).disabled).toBe(true);
    expect((screen.getByTestId("transfer-open") as HTMLButtonElement).disabled).toBe(true);
    push(idle({ call: up, consult: { with: "MeganB@contoso.example", state: "talking", conference: [] } }));
    await vi.waitFor(() => expect((screen.getByTestId("consult-complete") as HTMLButtonElement).disabled).toBe(false));
    await fireEvent.click(screen.getByTestId("consult-conference"));
    expect(api.phoneConsultStep).toHaveBeenLastCalledWith("conference");
    push(idle({ call: up, consult: { with: "MeganB@contoso.example", state: "conference", conference: ["MeganB@contoso.example"] } }));
    await vi.waitFor(() => expect(screen.getByTestId("consult-status").textContent).toContain("Conference"));
    expect(screen.queryByTestId("consult-cancel")).toBeNull();
    await fireEvent.click(screen.getByTestId("consult-complete"));
    expect(api.phoneConsultStep).toHaveBeenLastCalledWith("complete");
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("consult-complete").textContent).toBe("离开会议"));
  });

  it("runs a group call: adds people to the conference through a consult-only picker, and leaves it", async () => {
    const { api, push } = fakeApi(idle());
    render(Phone, { api });
    await vi.waitFor(() => expect(api.onPhone).toHaveBeenCalled());
    const up = ringing({ stage: "talking", answered_unix_ms: Date.now() });
    const megan = "MeganB@contoso.example";
    push(idle({ call: up, consult: { with: megan, state: "conference", conference: [megan] } }));
    expect((await screen.findByTestId("consult-status")).textContent).toBe(`Conference: you, ${megan} and the caller.`);
    expect(screen.getByTestId("consult-complete").textContent).toBe("Leave the conference");
    expect(screen.queryByTestId("consult-cancel")).toBeNull();
    // Add someone: the picker offers people, queues with agents logged in and outside
    // numbers to consult, no transfers.
    await fireEvent.click(screen.getByTestId("conference-add"));
    const picker = await screen.findByTestId("picker");
    expect(picker.querySelector("h3")!.textContent).toContain("bring them into the conference");
    await vi.waitFor(() => expect(picker.querySelectorAll('[data-testid="consult"]').length).toBeGreaterThan(0));
    expect(picker.querySelectorAll('[data-testid="transfer"]').length).toBe(0);
    expect(screen.getAllByTestId("target-queue").map((q) => q.dataset.name)).toEqual(["billing", "support"]);
    expect(screen.getByTestId("picker-number")).toBeTruthy();
    expect(screen.queryByTestId("transfer-number")).toBeNull();
    for (const row of picker.querySelectorAll('[data-testid="target-colleague"]')) {
      expect(row.getAttribute("data-available")).toBe("true");
    }
    const first = picker.querySelector('[data-testid="target-colleague"] [data-testid="consult"]') as HTMLButtonElement;
    await fireEvent.click(first);
    expect(api.phoneConsult).toHaveBeenCalled();
    await vi.waitFor(() => expect(screen.queryByTestId("picker")).toBeNull());
    // Consulting the new person while the caller talks on with Megan.
    const alex = "AlexW@contoso.example";
    push(idle({ call: up, consult: { with: alex, state: "talking", conference: [megan] } }));
    await vi.waitFor(() => expect(screen.getByTestId("consult-status").textContent).toContain("the caller talks on with the others"));
    expect(screen.getByTestId("conference-members").textContent).toBe(`In the conference: ${megan}`);
    expect(screen.getByTestId("consult-conference").textContent).toBe("Join the conference");
    await fireEvent.click(screen.getByTestId("consult-conference"));
    expect(api.phoneConsultStep).toHaveBeenLastCalledWith("conference");
    push(idle({ call: up, consult: { with: alex, state: "conference", conference: [megan, alex] } }));
    await vi.waitFor(() => expect(screen.getByTestId("consult-status").textContent).toBe(`Conference: you, ${megan}, ${alex} and the caller.`));
    await fireEvent.click(screen.getByTestId("consult-complete"));
    expect(api.phoneConsultStep).toHaveBeenLastCalledWith("complete");
    // A full conference offers no one more.
    const six = ["a", "b", "c", "d", "e", "f"].map((x) => `${x}@contoso.example`);
    push(idle({ call: up, consult: { with: "f@contoso.example", state: "conference", conference: six } }));
    await vi.waitFor(() => expect(screen.queryByTestId("conference-add")).toBeNull());
    expect(screen.getByTestId("conference-full").textContent).toContain("6");
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("consult-complete").textContent).toBe("离开会议"));
  });

  it("says why the router refused a call, in English and Chinese", async () => {
    const { api, push } = fakeApi(idle());
    render(Phone, { api });
    await vi.waitFor(() => expect(api.onPhone).toHaveBeenCalled());
    push(idle({ problem: { code: "call_forbidden", message: "403 Forbidden: …" } }));
    expect((await screen.findByTestId("phone-problem")).textContent).toContain("toll rules");
    push(idle({ problem: { code: "call_not_found", message: "404 Not Found: …" } }));
    await vi.waitFor(() => expect(screen.getByTestId("phone-problem").textContent).toContain("Nobody by that name"));
    push(idle({ problem: { code: "call_no_answer", message: "480: …" } }));
    await vi.waitFor(() => expect(screen.getByTestId("phone-problem").textContent).toContain("Nobody answered"));
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("phone-problem").textContent).toContain("无人接听"));
  });

  it("pops up a call with its caller, queue, number and choices, and answers it", async () => {
    const { api, push } = fakeApi(idle());
    render(Phone, { api });
    await vi.waitFor(() => expect(api.onPhone).toHaveBeenCalled());
    push(idle({ call: ringing() }));
    const popup = await screen.findByTestId("incoming");
    expect(screen.getByTestId("incoming-caller").textContent).toBe("+15551230000");
    expect(screen.getByTestId("incoming-queue").textContent).toBe("billing");
    expect(screen.getByTestId("incoming-dialled").textContent).toBe("+18005550100");
    expect(screen.getByTestId("incoming-choices").textContent).toBe("main:1");
    // The router's wait (75 s when offered) goes on while the phone rings.
    expect(screen.getByTestId("incoming-waited").textContent).toMatch(/^1:1[5-9]$/);
    expect(popup.textContent).toContain("Ctrl+Shift+A");
    await fireEvent.click(screen.getByTestId("answer"));
    expect(api.phoneAnswer).toHaveBeenCalledWith(7);
    // In Chinese too.
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("incoming").textContent).toContain("来电"));
    expect(screen.getByTestId("answer").textContent).toBe("接听");
  });

  it("says a call from the router to listen in on an agent is one, in English and Chinese", async () => {
    const { api, push } = fakeApi(idle());
    render(Phone, { api });
    await vi.waitFor(() => expect(api.onPhone).toHaveBeenCalled());
    push(idle({ call: ringing({ offer: { queue: null, call_record: "c-9", caller: "+15551230000", dialled: "+18005550100", choices: null, waited: null, monitor: "whisper adele@contoso.example" } }) }));
    expect((await screen.findByTestId("incoming-monitor")).textContent).toBe("Whisper to adele@contoso.example");
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("incoming-monitor").textContent).toBe("对 adele@contoso.example 耳语"));
    // Anything else in the header is not shown as a listen-in.
    push(idle({ call: ringing({ offer: { queue: null, call_record: null, caller: null, dialled: null, choices: null, waited: null, monitor: "eavesdrop everyone" } }) }));
    await vi.waitFor(() => expect(screen.queryByTestId("incoming-monitor")).toBeNull());
  });

  it("answers with Ctrl+Shift+A and rejects with Ctrl+Shift+H", async () => {
    const { api } = fakeApi(idle({ call: ringing() }));
    render(Phone, { api });
    await screen.findByTestId("incoming");
    await fireEvent.keyDown(window, { key: "A", ctrlKey: true, shiftKey: true });
    expect(api.phoneAnswer).toHaveBeenCalledWith(7);
    await fireEvent.keyDown(window, { key: "h", ctrlKey: true, shiftKey: true });
    expect(api.phoneReject).toHaveBeenCalledWith(7);
    await fireEvent.click(screen.getByTestId("reject"));
    expect(api.phoneReject).toHaveBeenCalledTimes(2);
  });

  it("shows the call with a timer; mutes, holds, sends keys and hangs up", async () => {
    const call = ringing({ stage: "talking", answered_unix_ms: Date.now() - 65_000, codec: "PCMU" });
    const { api, push } = fakeApi(idle({ call }));
    render(Phone, { api });
    const panel = await screen.findByTestId("in-call");
    expect(screen.queryByTestId("incoming")).toBeNull();
    expect(screen.getByTestId("in-call-caller").textContent).toBe("+15551230000");
    expect(screen.getByTestId("call-timer").textContent).toMatch(/^1:0[5-9]$/);
    await fireEvent.click(screen.getByTestId("mute"));
    expect(api.phoneMute).toHaveBeenLastCalledWith(true);
    await fireEvent.click(screen.getByTestId("hold"));
    expect(api.phoneHold).toHaveBeenLastCalledWith(7, true);
    push(idle({ call: { ...call, muted: true, held: true } }));
    await vi.waitFor(() => expect(panel.dataset.held).toBe("true"));
    expect(screen.getByTestId("mute").textContent).toBe("Unmute");
    expect(screen.getByTestId("hold").textContent).toBe("Resume");
    await fireEvent.click(screen.getByTestId("keypad-toggle"));
    await fireEvent.click(screen.getByTestId("key-5"));
    await fireEvent.click(screen.getByTestId("key-#"));
    expect(api.phoneDtmf).toHaveBeenNthCalledWith(1, 7, "5");
    expect(api.phoneDtmf).toHaveBeenNthCalledWith(2, 7, "#");
    await fireEvent.keyDown(window, { key: "H", ctrlKey: true, shiftKey: true });
    expect(api.phoneHangup).toHaveBeenCalledWith(7);
    await fireEvent.click(screen.getByTestId("hangup"));
    expect(api.phoneHangup).toHaveBeenCalledTimes(2);
  });

  it("turns the call clock at the call's own whole seconds, so a late tick skips none", async () => {
    vi.useFakeTimers();
    try {
      // Answered 1.7 s before the window opened.
      const call = ringing({ stage: "talking", answered_unix_ms: Date.now() - 1700 });
      const { api } = fakeApi(idle({ call }));
      render(Phone, { api });
      await vi.advanceTimersByTimeAsync(0);
      expect(screen.getByTestId("call-timer").textContent).toBe("0:01");
      // The first tick, a second on (2.7 s into the call); the next one is aimed at 3.0 s,
      // not at a second after the first (3.7 s).
      await vi.advanceTimersByTimeAsync(1000);
      expect(screen.getByTestId("call-timer").textContent).toBe("0:02");
      await vi.advanceTimersByTimeAsync(300);
      expect(screen.getByTestId("call-timer").textContent).toBe("0:03");
      await vi.advanceTimersByTimeAsync(999);
      expect(screen.getByTestId("call-timer").textContent).toBe("0:03");
      await vi.advanceTimersByTimeAsync(1);
      expect(screen.getByTestId("call-timer").textContent).toBe("0:04");
    } finally {
      vi.useRealTimers();
    }
  });

  it("sets the call volume and shows live quality", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      const call = ringing({ stage: "talking", answered_unix_ms: Date.now() });
      const { api } = fakeApi(idle({ call }));
      render(Phone, { api });
      const slider = (await screen.findByTestId("call-volume")) as HTMLInputElement;
      expect(slider.value).toBe("80");
      await fireEvent.change(slider, { target: { value: "40" } });
      expect(api.phoneVolume).toHaveBeenCalledWith(40);
      await vi.advanceTimersByTimeAsync(2100);
      expect(api.phoneQuality).toHaveBeenCalledWith(7);
      await vi.waitFor(() => expect(screen.getByTestId("call-quality").textContent).toContain("Loss 2% · jitter 3.4 ms · MOS 4.31"));
    } finally {
      vi.useRealTimers();
    }
  });

  it("wraps up with one of the queue's dispositions", async () => {
    const { api } = fakeApi(idle({ wrap_up: wrapUp() }));
    render(Phone, { api });
    await screen.findByTestId("wrap-up");
    const done = screen.getByTestId("wrap-up-done") as HTMLButtonElement;
    expect(done.disabled).toBe(true);
    await fireEvent.click(screen.getByTestId("disposition-callback"));
    expect(done.disabled).toBe(false);
    await fireEvent.click(done);
    expect(api.phoneWrapUp).toHaveBeenCalledWith("callback", null);
    // A queue without wrap-up time: no countdown.
    expect(screen.queryByTestId("wrap-up-countdown")).toBeNull();
    expect(screen.queryByTestId("wrap-up-over")).toBeNull();
  });

  it("sends the notes with the disposition through Done, and clears them after", async () => {
    const { api } = fakeApi(idle({ wrap_up: wrapUp() }));
    render(Phone, { api });
    await screen.findByTestId("wrap-up");
    const notes = screen.getByTestId("wrap-up-notes") as HTMLTextAreaElement;
    await fireEvent.input(notes, { target: { value: "Refund promised.\nCall back Monday 退款 🙂" } });
    // Counted as the router counts: the emoji is one character.
    expect(screen.getByTestId("wrap-up-notes-count").textContent).toBe("38 / 2000");
    await fireEvent.click(screen.getByTestId("disposition-resolved"));
    await fireEvent.click(screen.getByTestId("wrap-up-done"));
    expect(api.phoneWrapUp).toHaveBeenCalledWith("resolved", "Refund promised.\nCall back Monday 退款 🙂");
    await vi.waitFor(() => expect((screen.getByTestId("wrap-up-notes") as HTMLTextAreaElement).value).toBe(""));
  });

  it("keeps notes over 2,000 characters from being sent, and says so", async () => {
    const { api } = fakeApi(idle({ wrap_up: wrapUp({ dispositions: [] }) }));
    render(Phone, { api });
    await screen.findByTestId("wrap-up");
    await fireEvent.input(screen.getByTestId("wrap-up-notes"), { target: { value: "n".repeat(2001) } });
    expect(screen.getByTestId("wrap-up-notes-count").textContent).toBe("2001 / 2000");
    expect(screen.getByTestId("wrap-up-notes-too-long").textContent).toContain("at most 2000 characters");
    const done = screen.getByTestId("wrap-up-done") as HTMLButtonElement;
    expect(done.disabled).toBe(true);
    await fireEvent.click(done);
    expect(api.phoneWrapUp).not.toHaveBeenCalled();
    await fireEvent.input(screen.getByTestId("wrap-up-notes"), { target: { value: "n".repeat(2000) } });
    expect(done.disabled).toBe(false);
    setLanguage("zh-CN");
    await fireEvent.input(screen.getByTestId("wrap-up-notes"), { target: { value: "n".repeat(2001) } });
    expect(screen.getByTestId("wrap-up-notes-too-long").textContent).toContain("最多 2000 个字符");
  });

  it("counts the router's wrap-up down each second, then says the state the router set", async () => {
    vi.useFakeTimers();
    try {
      const ends = Date.now() + 65_000;
      const { api, push } = fakeApi(idle({ wrap_up: wrapUp({ ends_unix_ms: ends }) }));
      render(Phone, { api });
      await vi.waitFor(() => expect(screen.getByTestId("wrap-up-countdown").textContent).toBe("01:05 left"));
      await vi.advanceTimersByTimeAsync(1000);
      expect(screen.getByTestId("wrap-up-countdown").textContent).toBe("01:04 left");
      await vi.advanceTimersByTimeAsync(55_000);
      expect(screen.getByTestId("wrap-up-countdown").textContent).toBe("00:09 left");
      // The view sent again (another field changed) keeps the same end.
      const view = idle({ volume: 50, wrap_up: wrapUp({ ends_unix_ms: ends }) });
      push(view);
      await vi.advanceTimersByTimeAsync(1000);
      expect(screen.getByTestId("wrap-up-countdown").textContent).toBe("00:08 left");
      await vi.advanceTimersByTimeAsync(8000);
      expect(screen.queryByTestId("wrap-up-countdown")).toBeNull();
      expect(screen.getByTestId("wrap-up-over").textContent).toContain("Wrap-up time is over.");
      // The router's next state, once the shell heard it; Done still saves the notes.
      push({ ...view, wrap_up: { ...view.wrap_up!, after: "ready" } });
      await vi.waitFor(() => expect(screen.getByTestId("wrap-up-over").textContent).toContain("you are Ready again"));
      setLanguage("zh-CN");
      await vi.waitFor(() => expect(screen.getByTestId("wrap-up-over").textContent).toContain("话后处理时间已结束"));
      expect((screen.getByTestId("wrap-up-done") as HTMLButtonElement).disabled).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it("wraps up with a free code where the queue has none, and says a refusal in the person's language", async () => {
    const { api } = fakeApi(idle({ wrap_up: wrapUp({ call_record: null, dispositions: [] }) }));
    api.phoneWrapUp = vi.fn(async () => {
      throw { code: "router_refused_value", message: "422 not a disposition" };
    });
    render(Phone, { api });
    await screen.findByTestId("wrap-up");
    await fireEvent.click(screen.getByTestId("wrap-up-done"));
    expect(api.phoneWrapUp).toHaveBeenCalledWith(null, null);
    expect((await screen.findByTestId("phone-error")).textContent).toContain("refused that value");
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("phone-error").textContent).toContain("拒绝了该值"));
  });

  it("says what went wrong with a sound device, during the call and while it rings, in English and Chinese", async () => {
    const talking = ringing({ stage: "talking", answered_unix_ms: Date.now() - 5_000 });
    const { api, push } = fakeApi(idle({ call: talking }));
    render(Phone, { api });
    await screen.findByTestId("in-call");
    expect(screen.queryByTestId("call-device")).toBeNull();
    push(idle({ call: talking, device: { kind: "lost", direction: "output", device: null, wanted: "Headset", reason: "stream error" } }));
    const notice = await screen.findByTestId("call-device");
    expect(notice.dataset.kind).toBe("lost");
    expect(notice.textContent).toContain("Headset stopped working");
    expect(notice.title).toBe("stream error");
    // What took over, once it plays.
    push(idle({ call: talking, device: { kind: "lost", direction: "output", device: "default", wanted: "Headset", reason: "stream error" } }));
    await vi.waitFor(() => expect(screen.getByTestId("call-device").textContent).toBe("Headset stopped working (unplugged?); now using default."));
    setLanguage("zh-CN");
    await vi.waitFor(() => expect(screen.getByTestId("call-device").textContent).toContain("现在使用 default"));
    setLanguage("en");
    // Over: gone.
    push(idle({ call: talking }));
    await vi.waitFor(() => expect(screen.queryByTestId("call-device")).toBeNull());
    // A ring device that is missing, in the pop-up.
    push(idle({ call: ringing(), device: { kind: "fallback", direction: "output", device: "default", wanted: "USB speaker", reason: "not found" } }));
    const ring = await screen.findByTestId("ring-device");
    expect(ring.textContent).toBe("USB speaker is not available; using default instead.");
  });

  it("shows the phone's last problem", async () => {
    const { api } = fakeApi(idle({ problem: { code: "router_unreachable", message: "cannot reach" } }));
    render(Phone, { api });
    expect((await screen.findByTestId("phone-problem")).textContent).toContain("cannot be reached");
  });
});

describe("phone helpers", () => {
  it("knows its shortcuts and nothing else", () => {
    const k = (key: string, over = {}) => ({ key, ctrlKey: true, shiftKey: true, altKey: false, metaKey: false, ...over });
    expect(shortcutOf(k("a"))).toBe("answer");
    expect(shortcutOf(k("H"))).toBe("hangup");
    expect(shortcutOf(k("m"))).toBe("mute");
    expect(shortcutOf(k("a", { shiftKey: false }))).toBeNull();
    expect(shortcutOf(k("a", { altKey: true }))).toBeNull();
    expect(shortcutOf(k("x"))).toBeNull();
  });

  it("reads the router's listen-in header and nothing else", () => {
    expect(monitorOffer("listen adele@contoso.example")).toEqual({ mode: "listen", agent: "adele@contoso.example" });
    expect(monitorOffer(" barge a@b ")).toEqual({ mode: "barge", agent: "a@b" });
    expect(monitorOffer("listen")).toBeNull();
    expect(monitorOffer("record adele@contoso.example")).toBeNull();
    expect(monitorOffer("listen a b")).toBeNull();
    expect(monitorOffer(null)).toBeNull();
  });

  it("formats a call's time", () => {
    expect(clock(0)).toBe("0:00");
    expect(clock(65.9)).toBe("1:05");
    expect(clock(3723)).toBe("1:02:03");
    expect(clock(-5)).toBe("0:00");
    expect(countdown(65)).toBe("01:05");
    expect(countdown(0)).toBe("00:00");
    expect(countdown(6000)).toBe("100:00");
    expect(secondsLeft(10_000, 8_500)).toBe(2);
    expect(secondsLeft(10_000, 10_000)).toBe(0);
    expect(secondsLeft(10_000, 12_000)).toBe(0);
    expect(charCount("退款🙂")).toBe(3);
  });
});
