#!/usr/bin/env python3
"""The app's tray menu as a tray host sees it: the menu a StatusNotifierItem exports with
com.canonical.dbusmenu on the session bus ($DBUS_SESSION_BUS_ADDRESS; python3-dbus, installed
by tests/peers/install.sh). A panel reads it with GetLayout and reports clicks with Event;
this does the same, so the test drives the real menu the OS would show.

    dbusmenu.py layout          prints the menu as JSON: [{"label", "enabled", "toggle",
                                "checked", "separator", "children": [...]}, ...]; exit 3 when
                                no app on the bus exports a menu
    dbusmenu.py click A[/B]     clicks the entry labelled A (or B in A's submenu)
"""

import json
import os
import sys
import time
import xml.etree.ElementTree as ET

import dbus

MENU = "com.canonical.dbusmenu"


def menus(bus):
    """(bus name, object path) of every exported dbusmenu, found by introspection."""
    found = []
    own = bus.get_unique_name()
    for name in bus.list_names():
        if not name.startswith(":") or name == own:
            continue
        stack = ["/"]
        while stack:
            path = stack.pop()
            try:
                xml = bus.get_object(name, path, introspect=False).Introspect(
                    dbus_interface="org.freedesktop.DBus.Introspectable", timeout=2
                )
            except dbus.DBusException:
                continue
            root = ET.fromstring(str(xml))
            if any(i.get("name") == MENU for i in root.findall("interface")):
                found.append((name, path))
            for node in root.findall("node"):
                child = node.get("name")
                if child:
                    stack.append(path.rstrip("/") + "/" + child)
    return found


def entries(item):
    """A GetLayout item (id, properties, children) as plain values."""
    _id, props, children = item
    return {
        "id": int(_id),
        "label": str(props.get("label", "")).replace("_", ""),
        "enabled": bool(props.get("enabled", True)),
        "toggle": str(props.get("toggle-type", "")),
        "checked": int(props.get("toggle-state", 0)) == 1,
        "separator": str(props.get("type", "")) == "separator",
        "children": [entries(c) for c in children],
    }


def layout(bus):
    found = menus(bus)
    if not found:
        return None, None
    name, path = found[0]
    menu = dbus.Interface(bus.get_object(name, path, introspect=False), MENU)
    _revision, root = menu.GetLayout(0, -1, dbus.Array([], signature="s"))
    return menu, entries(root)["children"]


def main(argv):
    bus = dbus.bus.BusConnection(os.environ["DBUS_SESSION_BUS_ADDRESS"])
    if len(argv) == 2 and argv[1] == "layout":
        _menu, items = layout(bus)
        if items is None:
            print("no tray menu on the bus", file=sys.stderr)
            return 3
        print(json.dumps(items, ensure_ascii=False))
        return 0
    if len(argv) == 3 and argv[1] == "click":
        menu, items = layout(bus)
        if items is None:
            print("no tray menu on the bus", file=sys.stderr)
            return 1
        for label in argv[2].split("/"):
            match = [i for i in items if i["label"] == label]
            if not match:
                print(f"no entry {label!r} in {[i['label'] for i in items]}", file=sys.stderr)
                return 1
            entry, items = match[0], match[0]["children"]
        if entry["children"] or not entry["enabled"]:
            print(f"{argv[2]!r} cannot be clicked", file=sys.stderr)
            return 1
        menu.Event(
            dbus.Int32(entry["id"]),
            "clicked",
            dbus.Int32(0, variant_level=1),
            dbus.UInt32(int(time.time())),
        )
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
