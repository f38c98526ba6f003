//! XEP-0077 in-band registration with an XEP-0004 form: building the form we send and
//! reading the one a client submits. Pure functions over `minidom` elements.

use xmpp_component::minidom::Element;
use xmpp_component::xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_component::xmpp_parsers::ns;

use crate::store::Options;

/// `jabber:iq:register`, also the form's `FORM_TYPE`.
pub const NS_REGISTER: &str = ns::REGISTER;
const NS_DATA: &str = ns::DATA_FORMS;

/// The two options' field names.
pub const FIELD_STATUS: &str = "show_status_msg";
/// See [`FIELD_STATUS`].
pub const FIELD_JID: &str = "show_full_jid";

/// What a `set` on `jabber:iq:register` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// `<remove/>`: cancel the registration.
    Remove,
    /// Register or update; `None` values keep the current (or default) setting.
    Register {
        /// `show_status_msg`, if submitted.
        show_status_msg: Option<bool>,
        /// `show_full_jid`, if submitted.
        show_full_jid: Option<bool>,
    },
}

impl Submission {
    /// The options after applying this submission to `current`.
    pub fn apply_to(&self, current: Options) -> Options {
        match self {
            Submission::Remove => current,
            Submission::Register {
                show_status_msg,
                show_full_jid,
            } => Options {
                show_status_msg: show_status_msg.unwrap_or(current.show_status_msg),
                show_full_jid: show_full_jid.unwrap_or(current.show_full_jid),
            },
        }
    }
}

/// Why a submission is refused (answered with `bad-request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// The payload is not `<query xmlns='jabber:iq:register'/>`.
    #[error("not a jabber:iq:register query")]
    NotRegisterQuery,
    /// The form's type is not `submit`.
    #[error("the form must be of type 'submit', not {0:?}")]
    NotSubmit(String),
    /// `FORM_TYPE` names another form.
    #[error("FORM_TYPE {0:?} is not jabber:iq:register")]
    WrongFormType(String),
    /// A boolean field holds something else.
    #[error("field {field} must be a boolean, not {value:?}")]
    NotBoolean {
        /// The field name.
        field: String,
        /// What it held.
        value: String,
    },
    /// A known field appears twice or has several values.
    #[error("field {0} is given more than once")]
    Repeated(String),
}

/// The `<query/>` answering a registration `get`: instructions, `<registered/>` for a
/// registered user, and the x:data form pre-filled with `options`.
pub fn form_query(options: Options, registered: bool, url: &str, domain: &str) -> Element {
    let form_text = format!(
        "Your web status URL is: {url}\n\
         After you register, {domain} asks to see your presence: approve that request. \
         If you refuse it or later remove {domain} from your contacts, the page shows \
         \"Not shared\" until you approve again. The status message and your address \
         appear only if you tick the options below."
    );
    let mut form = DataForm::new(
        DataFormType::Form,
        NS_REGISTER,
        vec![
            boolean(FIELD_STATUS, "Show status msg", options.show_status_msg),
            boolean(FIELD_JID, "Show full JID", options.show_full_jid),
        ],
    );
    form.title = Some("Web presence".to_owned());
    form.instructions = Some(form_text);
    let instructions = if registered {
        "You are registered. Use the enclosed form to change your options.".to_owned()
    } else {
        "Use the enclosed form to register".to_owned()
    };
    let mut query = Element::builder("query", NS_REGISTER)
        .append(
            Element::builder("instructions", NS_REGISTER)
                .append(instructions)
                .build(),
        )
        .build();
    if registered {
        query.append_child(Element::bare("registered", NS_REGISTER));
    }
    query.append_child(form.into());
    query
}

fn boolean(var: &str, label: &str, value: bool) -> Field {
    let mut field = Field::new(var, FieldType::Boolean).with_value(if value { "1" } else { "0" });
    field.label = Some(label.to_owned());
    field
}

/// Reads a `set` payload. Without an x:data form (a legacy, empty submission) it registers
/// with the current options; unknown fields are ignored.
pub fn parse_submission(query: &Element) -> Result<Submission, FormError> {
    if !query.is("query", NS_REGISTER) {
        return Err(FormError::NotRegisterQuery);
    }
    if query.has_child("remove", NS_REGISTER) {
        return Ok(Submission::Remove);
    }
    let Some(form) = query.get_child("x", NS_DATA) else {
        return Ok(Submission::Register {
            show_status_msg: None,
            show_full_jid: None,
        });
    };
    let form_type = form.attr("type").unwrap_or_default();
    if form_type != "submit" {
        return Err(FormError::NotSubmit(form_type.to_owned()));
    }
    let (mut show_status_msg, mut show_full_jid) = (None, None);
    for field in form.children().filter(|c| c.is("field", NS_DATA)) {
        let values: Vec<String> = field
            .children()
            .filter(|c| c.is("value", NS_DATA))
            .map(|v| v.text())
            .collect();
        match field.attr("var").unwrap_or_default() {
            "FORM_TYPE" => {
                let value = values.first().map(|v| v.trim()).unwrap_or_default();
                if value != NS_REGISTER {
                    return Err(FormError::WrongFormType(value.to_owned()));
                }
            }
            var @ (FIELD_STATUS | FIELD_JID) => {
                let slot = if var == FIELD_STATUS {
                    &mut show_status_msg
                } else {
                    &mut show_full_jid
                };
                if slot.is_some() || values.len() > 1 {
                    return Err(FormError::Repeated(var.to_owned()));
                }
                *slot = Some(parse_bool(var, values.first().map(String::as_str))?);
            }
            _ => {}
        }
    }
    Ok(Submission::Register {
        show_status_msg,
        show_full_jid,
    })
}

/// XEP-0004 booleans: `0`/`1`/`false`/`true`; a missing value is false.
fn parse_bool(field: &str, value: Option<&str>) -> Result<bool, FormError> {
    match value.map(str::trim) {
        None | Some("0") | Some("false") => Ok(false),
        Some("1") | Some("true") => Ok(true),
        Some(other) => Err(FormError::NotBoolean {
            field: field.to_owned(),
            value: other.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        xml.parse().expect("test XML")
    }

    fn field_value(form: &Element, var: &str) -> Option<String> {
        form.children()
            .find(|f| f.attr("var") == Some(var))
            .and_then(|f| f.get_child("value", NS_DATA))
            .map(|v| v.text())
    }

    #[test]
    fn the_form_matches_the_reference_bot() {
        let query = form_query(
            Options::default(),
            false,
            "https://example.org/status/TOKEN",
            "webstatus.example.org",
        );
        assert!(query.is("query", NS_REGISTER));
        assert!(!query.has_child("registered", NS_REGISTER));
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
        let query = form_query(options, true, "u", "d");
        assert!(query.has_child("registered", NS_REGISTER));
        let form = query.get_child("x", NS_DATA).expect("form");
        assert_eq!(field_value(form, FIELD_STATUS).as_deref(), Some("1"));
        assert_eq!(field_value(form, FIELD_JID).as_deref(), Some("0"));
    }

    #[test]
    fn reads_the_reference_submission() {
        // The exmpp bot's wire log.
        let query = parse(
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field type='hidden' var='FORM_TYPE'><value>jabber:iq:register</value></field>\
             <field type='boolean' var='show_status_msg'><value>1</value></field>\
             <field type='boolean' var='show_full_jid'><value>0</value></field>\
             <field var='unknown_field'><value>whatever</value></field>\
             </x></query>",
        );
        let submission = parse_submission(&query).expect("valid");
        assert_eq!(
            submission,
            Submission::Register {
                show_status_msg: Some(true),
                show_full_jid: Some(false)
            }
        );
        let current = Options {
            show_status_msg: false,
            show_full_jid: true,
        };
        assert_eq!(
            submission.apply_to(current),
            Options {
                show_status_msg: true,
                show_full_jid: false
            }
        );
    }

    #[test]
    fn remove_and_legacy_submissions() {
        let remove = parse("<query xmlns='jabber:iq:register'><remove/></query>");
        assert_eq!(parse_submission(&remove), Ok(Submission::Remove));
        let legacy = parse("<query xmlns='jabber:iq:register'/>");
        assert_eq!(
            parse_submission(&legacy),
            Ok(Submission::Register {
                show_status_msg: None,
                show_full_jid: None
            })
        );
        let partial = parse(
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field var='show_full_jid'><value>true</value></field></x></query>",
        );
        let submission = parse_submission(&partial).expect("valid");
        assert_eq!(
            submission.apply_to(Options::default()),
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
            let error = parse_submission(&parse(xml)).expect_err(xml);
            assert!(error.to_string().contains(why), "{error} for {xml}");
        }
    }
}
