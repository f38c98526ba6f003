//! The `xmpp-webstatus` component will live here; its issue is still open.
//! The crate exists so the workspace layout is complete.
