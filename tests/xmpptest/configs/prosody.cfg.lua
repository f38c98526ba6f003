-- Self-contained Prosody 0.12 config for the integration tests (tests/xmpptest/servers.py).
-- Adapted from shared/reference/servers/prosody.cfg.lua. Nothing here points at
-- /etc/prosody or /var/lib/prosody; every path and port comes from the environment
-- (Prosody's config reads ENV_FOO as os.getenv("FOO")), so this file is static:
--   XMPP_TEST_DIR        absolute path of an existing, writable dir (data, pid file)
--   PROSODY_C2S_PORT     client port                (default 15222)
--   PROSODY_COMP_PORT    XEP-0114 component port    (default 15347)
--   PROSODY_HTTP_PORT    HTTP port for websocket    (default 15280)
--   PROSODY_LOG_LEVEL    minimum log level          (default "debug")
-- Start:    prosody --config /abs/path/prosody.cfg.lua -F   (foreground, logs to stdout;
--           absolute path, or SIGHUP reload fails after prosody chdir()s to data_path)
-- Register: prosodyctl --config /abs/path/prosody.cfg.lua register alice localhost alicepw

-- CI runs as root; without this mod_posix refuses to start ("Refusing to run as root")
-- and prosodyctl would setuid to the 'prosody' user and fail to write the data dir.
run_as_root = true

data_path = ENV_XMPP_TEST_DIR            -- must be absolute (prosody chdir()s into it)
pidfile = "prosody.pid"                  -- relative to data_path
certificates = ENV_XMPP_TEST_DIR         -- no certs needed; avoids "Error indexing certificate directory ./certs"

-- Everything to stdout; the harness redirects stdout to a file.
log = { { levels = { min = ENV_PROSODY_LOG_LEVEL or "debug" }, to = "console" } }

-- Loopback only, explicit ports, no s2s listener (it would bind *:5269).
interfaces = { "127.0.0.1" }
c2s_ports = { tonumber(ENV_PROSODY_C2S_PORT) or 15222 }
component_ports = { tonumber(ENV_PROSODY_COMP_PORT) or 15347 }
component_interfaces = { "127.0.0.1" }
http_ports = { tonumber(ENV_PROSODY_HTTP_PORT) or 15280 }
http_interfaces = { "127.0.0.1" }
https_ports = { }
modules_disabled = { "s2s" }

modules_enabled = {
	"roster";      -- rosters, presence subscriptions
	"saslauth";    -- SASL login
	"disco";
	"ping";
	"register";    -- in-band registration (XEP-0077), guarded by allow_registration
	"websocket";   -- RFC 7395 at http://127.0.0.1:<http port>/xmpp-websocket (pulls in mod_http)
}

-- Plain-text local testing: no mod_tls, no certificates.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true      -- offer PLAIN as well as SCRAM-SHA-1 without TLS
consider_websocket_secure = true         -- CORS for the websocket endpoint is on by default in 0.12
authentication = "internal_hashed"
allow_registration = true                -- clients may also register themselves

VirtualHost "localhost"

-- Harness only: the readiness probe does its component handshake as this name,
-- so it never competes with (or gets <conflict/> from) a component under test.
Component "probe.localhost"
	component_secret = "probe-secret"

-- The components: the deploy snippets themselves (deploy/prosody/*.cfg.lua, with the test
-- domain and secrets), copied next to this file by the harness, as Debian's conf.d/.
Include "components/*.cfg.lua"
