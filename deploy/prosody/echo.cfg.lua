-- xmpp-echo as a Prosody 0.12 external component (XEP-0114).
-- Install (Debian: /etc/prosody/prosody.cfg.lua includes conf.d/*.cfg.lua):
--   install -m 0640 -o root -g prosody deploy/prosody/echo.cfg.lua /etc/prosody/conf.d/
--   edit the domain and the secret below, then: prosodyctl reload
-- The component listener is shared by all components: Prosody's default is port 5347 on
-- loopback only (127.0.0.1 and ::1), which deploy/config/echo.toml expects. To change it, set
-- component_ports / component_interfaces in the GLOBAL section of prosody.cfg.lua, not here:
-- conf.d files are included after the VirtualHost sections, so a global option written here
-- would land in the last host's section. Keep the listener off public interfaces: XEP-0114
-- has no TLS, and the handshake only proves the secret. A component on another host reaches
-- it through a tunnel (ssh -L, WireGuard, stunnel; see deploy/README.md, step 3), never
-- over an open port: Prosody's component port cannot do TLS (xmpp-echo --tls is for
-- ejabberd's `tls: true` listeners or a server-side stunnel).
-- CI starts a real Prosody with this very file (tests/xmpptest/servers.py), with
-- "example.org" replaced by "localhost" and the secret by a test secret.

-- The component's address; the same value as `domain` in /etc/xmpp-echo/config.toml.
Component "echo.example.org"
	-- The SAME value as /etc/xmpp-echo/secret. Generate: openssl rand -hex 32
	-- Never reuse a secret across components.
	component_secret = "REPLACE-WITH-THE-CONTENT-OF-/etc/xmpp-echo/secret"
	-- The name in the server's service discovery (disco#items of example.org). While the
	-- component is disconnected, Prosody itself answers disco#info with this name.
	name = "Echo"
	-- A restarted component replaces a half-dead old connection at once (the default,
	-- "kick_new", refuses the newcomer with <conflict/> until the old one times out).
	component_conflict_resolve = "kick_old"
