#!/usr/bin/env python3
"""Verifies webhook requests our server sent with PyPI `standardwebhooks` (the Standard Webhooks
reference library): stdin {"checks": [{"secret": "whsec_…", "headers": {…}, "body": "…"}]},
stdout [true|"error message", …] in the same order."""
import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

out = []
for check in json.load(sys.stdin)["checks"]:
    try:
        Webhook(check["secret"]).verify(check["body"], check["headers"])
        out.append(True)
    except WebhookVerificationError as e:
        out.append(str(e) or "verification failed")
print(json.dumps(out))
