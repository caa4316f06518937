-- Prosody 0.12: the parts of /etc/prosody/prosody.cfg.lua that xmpp-broadcast needs.
-- Matching component config: examples/prosody/component.toml

-- Accounts in SQL, so that xmpp-broadcast can read them (here SQLite; PostgreSQL and
-- MySQL/MariaDB work too: driver = "PostgreSQL" / "MySQL" with database, username, password, host).
storage = "sql"
sql = { driver = "SQLite3"; database = "prosody.sqlite" }
-- With SQLite, switch the file to WAL once (Prosody's driver has no busy timeout):
--   sqlite3 /var/lib/prosody/prosody.sqlite 'PRAGMA journal_mode=WAL'

-- The XEP-0114 listener, on loopback only (the protocol is plaintext).
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

VirtualHost "example.com"

Component "broadcast.example.com"
  component_secret = "change-me"
  -- The messages come from admin@example.com, not from the component's own domain.
  validate_from_addresses = false
