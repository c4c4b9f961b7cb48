#!/usr/bin/env python3
"""The test's X display, used as a window manager and a person would use it (python3-xlib,
installed by tests/peers/install.sh). Under Xvfb there is no window manager, so closing a window
means what a window manager does on a click of its close button: a WM_DELETE_WINDOW message
(ICCCM 4.1.2.7), which the app may refuse (closing to the tray) or obey (quitting).

    x11.py state TITLE   prints "viewable", "unmapped" or "none" for the top-level window(s)
                         named TITLE (viewable if any of them is)
    x11.py close TITLE   asks every top-level window named TITLE to close; exit 1 if none
"""

import sys

from Xlib import X, display, error, protocol


def named(d, title):
    """Top-level windows (children of the root) whose _NET_WM_NAME or WM_NAME is title."""
    net_name = d.intern_atom("_NET_WM_NAME")
    utf8 = d.intern_atom("UTF8_STRING")
    found = []
    for w in d.screen().root.query_tree().children:
        try:
            prop = w.get_full_property(net_name, utf8)
            name = prop.value.decode("utf-8", "replace") if prop else w.get_wm_name()
        except error.XError:
            continue
        if name == title:
            found.append(w)
    return found


def main(argv):
    if len(argv) != 3 or argv[1] not in ("state", "close"):
        print(__doc__, file=sys.stderr)
        return 2
    d = display.Display()
    windows = named(d, argv[2])
    if argv[1] == "state":
        states = [w.get_attributes().map_state for w in windows]
        if not states:
            print("none")
        elif X.IsViewable in states:
            print("viewable")
        else:
            print("unmapped")
        return 0
    if not windows:
        print(f"no window named {argv[2]!r}", file=sys.stderr)
        return 1
    protocols = d.intern_atom("WM_PROTOCOLS")
    delete = d.intern_atom("WM_DELETE_WINDOW")
    for w in windows:
        event = protocol.event.ClientMessage(
            window=w, client_type=protocols, data=(32, [delete, X.CurrentTime, 0, 0, 0])
        )
        w.send_event(event, event_mask=X.NoEventMask)
    d.flush()
    d.sync()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
