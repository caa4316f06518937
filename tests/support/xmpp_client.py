"""A real XMPP client for the integration tests (driven by tests/support/xmpp_client.rs).

Usage: xmpp_client.py JID PASSWORD HOST PORT [LANGUAGE]

Logs in with slixmpp over a plaintext loopback c2s connection (TLS off, SASL allowed
without encryption), sends initial presence (which makes Prosody flush the offline
store) and prints one JSON object per line on stdout:

    {"event": "online"}                         (initial presence processed by the server)
    {"event": "message", "from": ..., "to": ..., "type": ..., "id": ..., "subject": ...,
     "body": ..., "origin_id": ..., "replace_id": ..., "retract_id": ..., "delayed": true|false,
     "lang": the message's xml:lang, "subjects"/"bodies": [[xml:lang or "", text], ...] in
     document order, "body_in_language": the body slixmpp gives for LANGUAGE (msg['body|LANGUAGE'])}

With LANGUAGE, the client's stream has that xml:lang (as a client set to that language).
    {"event": "error", "reason": ...}          (then exits with status 1)

Diagnostics go to stderr. The process runs until it is killed.
"""

import json
import logging
import os
import sys

import slixmpp

DELAY = "{urn:xmpp:delay}delay"
ORIGIN_ID = "{urn:xmpp:sid:0}origin-id"
REPLACE = "{urn:xmpp:message-correct:0}replace"
RETRACT = "{urn:xmpp:message-retract:1}retract"


def emit(**event):
    print(json.dumps(event), flush=True)


XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, language=None):
        self.language = language
        super().__init__(
            jid,
            password,
            lang=language,
            plugin_config={
                "feature_mechanisms": {"unencrypted_plain": True, "unencrypted_scram": True}
            },
        )
        # Loopback test server without certificates: plain TCP only.
        self.enable_direct_tls = False
        self.enable_starttls = False
        self.enable_plaintext = True
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_auth", lambda _: self.fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))
        self.add_event_handler("disconnected", lambda _: self.fail("disconnected"))

    def fail(self, reason):
        emit(event="error", reason=reason)
        os._exit(1)

    async def on_session_start(self, _event):
        self.send_presence()
        # The server handles a session's stanzas in order: once this round trip is done the
        # presence has been processed, so messages to the bare JID are delivered live.
        await self.get_roster()
        emit(event="online")

    def on_message(self, msg):
        def id_of(child):
            element = msg.xml.find(child)
            return None if element is None else element.get("id")

        def texts(name):
            return [
                [child.get(XML_LANG, ""), child.text or ""]
                for child in msg.xml
                if child.tag == "{jabber:client}" + name
            ]

        emit(
            event="message",
            **{"from": str(msg["from"])},
            to=str(msg["to"]),
            type=msg["type"],
            id=msg["id"],
            subject=msg["subject"] or "",
            body=msg["body"],
            origin_id=id_of(ORIGIN_ID),
            replace_id=id_of(REPLACE),
            retract_id=id_of(RETRACT),
            delayed=msg.xml.find(DELAY) is not None,
            lang=msg.xml.get(XML_LANG),
            subjects=texts("subject"),
            bodies=texts("body"),
            body_in_language=msg["body|" + self.language] if self.language else None,
        )


def main():
    jid, password, host, port = sys.argv[1:5]
    language = sys.argv[5] if len(sys.argv) > 5 else None
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    client = Client(jid, password, language)
    client.connect(host=host, port=int(port))
    client.loop.run_forever()


if __name__ == "__main__":
    main()
