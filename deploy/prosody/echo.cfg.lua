-- xmpp-echo as a Prosody external component (XEP-0114).
-- Install: copy to /etc/prosody/conf.d/echo.cfg.lua (Debian's prosody.cfg.lua includes
-- conf.d/*.cfg.lua), `chown root:prosody` and `chmod 0640` it (it holds a secret), then
-- `prosodyctl reload` (or restart Prosody).
--
-- The component listener is shared by all components. Prosody's defaults are port 5347 on
-- loopback only (127.0.0.1 and ::1), which is what xmpp-echo's default unit expects.
-- To change them, set component_ports / component_interfaces in the GLOBAL section of
-- prosody.cfg.lua, not here: conf.d files are included after the VirtualHost sections, so
-- a global option written here would land in the last host's section. Keep the listener
-- off public interfaces: XEP-0114 has no TLS, and the handshake only proves the secret.

-- The component's address. Users message echo.localhost (use a real subdomain in production,
-- e.g. echo.example.org). It must match xmpp-echo's --domain.
Component "echo.localhost"
	-- Shared secret: the SAME value as in xmpp-echo's secret file (--secret-file,
	-- /etc/xmpp-echo/secret with deploy/systemd/xmpp-echo.service). Generate one with
	--   openssl rand -hex 32
	-- This placeholder must be replaced; never reuse a secret across components.
	component_secret = "REPLACE-WITH-THE-CONTENT-OF-/etc/xmpp-echo/secret"
	-- Optional: Prosody itself answers disco#info for the component while it is disconnected.
	-- name = "Echo"
	-- A second connection for the same name is refused with <conflict/> ("kick_new", the default);
	-- "kick_old" lets a restarted component replace a half-dead old connection at once.
	component_conflict_resolve = "kick_old"

-- Components that come later; uncomment when they are deployed (each with its own secret).
-- Component "pong.localhost"
-- 	component_secret = "REPLACE-WITH-THE-CONTENT-OF-/etc/xmpp-pong/secret"
-- 	component_conflict_resolve = "kick_old"
--
-- Component "webstatus.localhost"
-- 	component_secret = "REPLACE-WITH-THE-CONTENT-OF-/etc/xmpp-webstatus/secret"
-- 	component_conflict_resolve = "kick_old"
