// What the router offers in the picker tests: queues, an attendant, colleagues (one on a call),
// expert groups (one with nobody free), outside numbers allowed.
import type { TransferTargets } from "../ipc";

export const targets: TransferTargets = {
  tenant: "contoso",
  queues: [{ name: "billing", waiting: 2, ready: 1, staffed: 3, mine: true }, { name: "orders", waiting: 0, ready: 0, staffed: 0, mine: false }, { name: "support", waiting: 0, ready: 2, staffed: 2, mine: false }],
  attendants: ["main"],
  colleagues: [
    { upn: "MeganB@contoso.example", name: "Megan Bowen", state: "ready", teams: "Available/Available", available: true, transferable: true, in_teams: true },
    { upn: "AlexW@contoso.example", name: "Alex Wilber", state: "on_call", teams: "Busy/InACall", available: false, transferable: false, in_teams: false },
    { upn: "LynneR@contoso.example", name: "Lynne Robbins", state: "not_ready", teams: null, available: true, transferable: false, in_teams: false },
  ],
  experts: [
    { name: "escalations", skill: "escalations", min_level: 3, available: [{ upn: "MeganB@contoso.example", name: "Megan Bowen", level: 4, teams: null, in_teams: true }], unavailable: 1 },
    { name: "legal", skill: "legal", min_level: 1, available: [], unavailable: 2 },
  ],
  outside_numbers: true,
};
