#!/usr/bin/env python3
"""parse_eml.py FILE.eml [...] -> JSON array (UTF-8), one object per file.

An independent reading of what our mailer produced, via the stdlib `email` package
(policy.default), plus raw-octet checks the parser does not make itself:
  subject, from {name,address}, to [{name,address}], cc, message_id, date, date_iso,
  mime_version, headers [[name, raw value (folding kept)]...] in order, header_line_max,
  body_line_max (longest line anywhere, octets without EOL), has_bare_lf,
  structure e.g. "multipart/mixed[multipart/alternative[text/plain,text/html],text/calendar]",
  parts (leaves, in order): content_type, charset, params, transfer_encoding, filename,
  disposition, content (str; binary leaves: null + content_base64), defects [str] (message,
  every part and every parsed header; empty for a good message).
"""
import base64
import email
import json
import re
import sys
from email import policy


def addr(a):
    return {"name": a.display_name, "address": a.addr_spec}


def addresses(msg, name):
    h = msg[name]
    return [addr(a) for a in h.addresses] if h is not None else []


def structure(part):
    if part.is_multipart():
        return f"{part.get_content_type()}[{','.join(structure(p) for p in part.get_payload())}]"
    return part.get_content_type()


def leaf(part, defects):
    ct = part["content-type"]
    cte = part.get("content-transfer-encoding")
    out = {
        "content_type": part.get_content_type(),
        "charset": part.get_content_charset(),
        "params": dict(ct.params) if ct is not None else {},
        "transfer_encoding": str(cte).strip().lower() if cte is not None else None,
        "filename": part.get_filename(),
        "disposition": part.get_content_disposition(),
        "content": None,
    }
    try:
        content = part.get_content()
    except Exception as e:  # e.g. unknown charset
        defects.append(f"get_content failed for {out['content_type']}: {e!r}")
        return out
    if isinstance(content, bytes):
        out["content_base64"] = base64.b64encode(content).decode()
    elif isinstance(content, str):
        out["content"] = content
    else:  # message/rfc822 leaf: its text
        out["content"] = content.as_string()
    return out


def parse(path):
    raw = open(path, "rb").read()
    msg = email.message_from_bytes(raw, policy=policy.default)
    m = re.search(rb"\r?\n\r?\n", raw)
    head = raw[: m.start()] if m else raw
    lines = lambda b: re.split(rb"\r?\n", b)
    defects = []
    for part in msg.walk():
        defects += [f"{type(d).__name__}: {d}" for d in part.defects]
        for name, value in part.items():
            defects += [f"{name}: {type(d).__name__}: {d}" for d in getattr(value, "defects", ())]
    parts = [leaf(p, defects) for p in msg.walk() if not p.is_multipart()]
    date = msg["date"]
    frm = msg["from"]
    return {
        "file": path,
        "subject": str(msg["subject"]) if msg["subject"] is not None else None,
        "from": addr(frm.addresses[0]) if frm is not None and frm.addresses else None,
        "to": addresses(msg, "to"),
        "cc": addresses(msg, "cc"),
        "message_id": str(msg["message-id"]) if msg["message-id"] is not None else None,
        "date": str(date) if date is not None else None,
        "date_iso": date.datetime.isoformat() if date is not None and getattr(date, "datetime", None) else None,
        "mime_version": str(msg["mime-version"]) if msg["mime-version"] is not None else None,
        "headers": [[n, v] for n, v in msg.raw_items()],
        "header_line_max": max(map(len, lines(head)), default=0),
        "body_line_max": max(map(len, lines(raw)), default=0),
        "has_bare_lf": re.search(rb"(?<!\r)\n", raw) is not None,
        "structure": structure(msg),
        "parts": parts,
        "defects": defects,
    }


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = json.dumps([parse(p) for p in sys.argv[1:]], ensure_ascii=False, indent=1)
    sys.stdout.buffer.write(out.encode("utf-8") + b"\n")
