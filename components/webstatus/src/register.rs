//! XEP-0077 registration with an XEP-0004 form: the form we offer and the options a
//! submitted one sets, on the framework's `ibr` and `forms` helpers.

use xmpp_component::forms::{FormBuilder, FormError, SubmittedForm};
use xmpp_component::ibr::{NS_REGISTER, RegistrationForm};

use crate::store::Options;

/// The two options' field names.
pub const FIELD_STATUS: &str = "show_status_msg";
/// See [`FIELD_STATUS`].
pub const FIELD_JID: &str = "show_full_jid";

/// What a submitted form sets; `None` keeps the current (or default) setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Choices {
    /// `show_status_msg`, if submitted.
    pub show_status_msg: Option<bool>,
    /// `show_full_jid`, if submitted.
    pub show_full_jid: Option<bool>,
}

impl Choices {
    /// Reads the submitted form; without one (a legacy, empty submission) nothing changes.
    /// Unknown fields are ignored.
    pub fn read(form: Option<&SubmittedForm>) -> Result<Choices, FormError> {
        let Some(form) = form else {
            return Ok(Choices::default());
        };
        Ok(Choices {
            show_status_msg: form.boolean(FIELD_STATUS)?,
            show_full_jid: form.boolean(FIELD_JID)?,
        })
    }

    /// The options after applying these choices to `current`.
    pub fn apply_to(self, current: Options) -> Options {
        Options {
            show_status_msg: self.show_status_msg.unwrap_or(current.show_status_msg),
            show_full_jid: self.show_full_jid.unwrap_or(current.show_full_jid),
        }
    }
}

/// The answer to a registration `get`: instructions, `<registered/>` for a registered
/// user, and the form pre-filled with `options`, as the exmpp web-status bot sends it.
pub fn form(options: Options, registered: bool, url: &str, domain: &str) -> RegistrationForm {
    let form_text = format!(
        "Your web status URL is: {url}\n\
         After you register, {domain} asks to see your presence: approve that request. \
         If you refuse it or later remove {domain} from your contacts, the page shows \
         \"Not shared\" until you approve again. The status message and your address \
         appear only if you tick the options below."
    );
    let instructions = if registered {
        "You are registered. Use the enclosed form to change your options."
    } else {
        "Use the enclosed form to register"
    };
    RegistrationForm {
        instructions: instructions.to_owned(),
        registered,
        form: FormBuilder::new()
            .form_type(NS_REGISTER)
            .title("Web presence")
            .instructions(&form_text)
            .boolean(FIELD_STATUS, "Show status msg", options.show_status_msg)
            .boolean(FIELD_JID, "Show full JID", options.show_full_jid)
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_component::ibr::Submission;
    use xmpp_component::minidom::Element;
    use xmpp_component::xmpp_parsers::ns::DATA_FORMS as NS_DATA;

    /// What a `set` payload does: `None` for `<remove/>`, else the choices; or the error
    /// text the user gets.
    fn submit(xml: &str) -> Result<Option<Choices>, String> {
        let query: Element = xml.parse().expect("test XML");
        match Submission::parse(&query).map_err(|e| e.to_string())? {
            Submission::Remove => Ok(None),
            Submission::Register(form) => Choices::read(form.as_ref())
                .map(Some)
                .map_err(|e| e.to_string()),
        }
    }

    fn field_value(form: &Element, var: &str) -> Option<String> {
        form.children()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.get_child("value", NS_DATA))
            .map(|v| v.text())
    }

    #[test]
    fn the_form_matches_the_reference_bot() {
        let query = Element::from(form(
            Options::default(),
            false,
            "https://example.org/status/TOKEN",
            "webstatus.example.org",
        ));
        assert!(query.is("query", NS_REGISTER));
        assert!(!query.has_child("registered", NS_REGISTER));
        let children: Vec<&str> = query.children().map(|c| c.name()).collect();
        assert_eq!(children, ["instructions", "x"], "the bot's order");
        assert_eq!(
            query
                .get_child("instructions", NS_REGISTER)
                .map(|i| i.text()),
            Some("Use the enclosed form to register".to_owned())
        );
        let form = query.get_child("x", NS_DATA).expect("form");
        assert_eq!(form.attr("type"), Some("form"));
        let hidden = form
            .children()
            .find(|f| f.attr("var") == Some("FORM_TYPE"))
            .expect("FORM_TYPE");
        assert_eq!(hidden.attr("type"), Some("hidden"));
        assert_eq!(field_value(form, "FORM_TYPE").as_deref(), Some(NS_REGISTER));
        for (var, label) in [
            (FIELD_STATUS, "Show status msg"),
            (FIELD_JID, "Show full JID"),
        ] {
            let field = form
                .children()
                .find(|f| f.attr("var") == Some(var))
                .expect(var);
            assert_eq!(field.attr("type"), Some("boolean"));
            assert_eq!(field.attr("label"), Some(label));
            assert_eq!(field_value(form, var).as_deref(), Some("0"));
        }
        let text = form
            .get_child("instructions", NS_DATA)
            .map(|i| i.text())
            .unwrap_or_default();
        assert!(text.contains("https://example.org/status/TOKEN"), "{text}");
        assert!(text.contains("Not shared"), "{text}");
    }

    #[test]
    fn a_registered_user_gets_registered_and_their_values() {
        let options = Options {
            show_status_msg: true,
            show_full_jid: false,
        };
        let query = Element::from(form(options, true, "u", "d"));
        let children: Vec<&str> = query.children().map(|c| c.name()).collect();
        assert_eq!(children, ["instructions", "registered", "x"]);
        let form = query.get_child("x", NS_DATA).expect("form");
        assert_eq!(field_value(form, FIELD_STATUS).as_deref(), Some("1"));
        assert_eq!(field_value(form, FIELD_JID).as_deref(), Some("0"));
    }

    #[test]
    fn reads_the_reference_submission() {
        // The exmpp bot's wire log.
        let choices = submit(
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field type='hidden' var='FORM_TYPE'><value>jabber:iq:register</value></field>\
             <field type='boolean' var='show_status_msg'><value>1</value></field>\
             <field type='boolean' var='show_full_jid'><value>0</value></field>\
             <field var='unknown_field'><value>whatever</value></field>\
             </x></query>",
        )
        .expect("valid")
        .expect("not a removal");
        let current = Options {
            show_status_msg: false,
            show_full_jid: true,
        };
        assert_eq!(
            choices.apply_to(current),
            Options {
                show_status_msg: true,
                show_full_jid: false
            }
        );
    }

    #[test]
    fn remove_and_legacy_submissions() {
        assert_eq!(
            submit("<query xmlns='jabber:iq:register'><remove/></query>"),
            Ok(None)
        );
        let legacy = submit("<query xmlns='jabber:iq:register'/>").expect("valid");
        assert_eq!(legacy, Some(Choices::default()));
        let partial = submit(
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field var='show_full_jid'><value>true</value></field></x></query>",
        )
        .expect("valid")
        .expect("not a removal");
        assert_eq!(
            partial.apply_to(Options::default()),
            Options {
                show_status_msg: false,
                show_full_jid: true
            }
        );
    }

    #[test]
    fn malformed_forms_are_refused() {
        let cases = [
            (
                "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='form'/></query>",
                "type",
            ),
            (
                "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>urn:other</value></field></x></query>",
                "FORM_TYPE",
            ),
            (
                "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='show_status_msg'><value>yes please</value></field></x></query>",
                "boolean",
            ),
            (
                "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='show_status_msg'><value>1</value><value>0</value></field></x></query>",
                "more than once",
            ),
            (
                "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='show_full_jid'><value>1</value></field>\
                 <field var='show_full_jid'><value>1</value></field></x></query>",
                "more than once",
            ),
            ("<query xmlns='urn:other'/>", "jabber:iq:register"),
        ];
        for (xml, why) in cases {
            let error = submit(xml).expect_err(xml);
            assert!(error.contains(why), "{error} for {xml}");
        }
    }
}
