//! XEP-0004 data forms on `xmpp_parsers::data_forms`: [`FormBuilder`] builds a form to
//! send, [`SubmittedForm`] reads one a user sent back.
//!
//! Errors follow XEP-0004/XEP-0077 practice: a submission that is not a well-formed
//! `submit` form (wrong type, wrong `FORM_TYPE`, a boolean that is not one, a single-valued
//! field given twice) is `bad-request`; a well-formed one that breaks the form's rules (a
//! required field left empty, a value outside a list's options) is `not-acceptable`. Both
//! carry the reason as text, via `From<FormError> for StanzaError`.

use minidom::Element;
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

use crate::error::stanza_error;

/// Builds a data form (type `form`, or `result` for a command's outcome) field by field.
///
/// ```
/// use xmpp_component::forms::FormBuilder;
/// let form = FormBuilder::new()
///     .form_type("urn:example:settings")
///     .title("Settings")
///     .boolean("loud", "Shout the answers", false)
///     .text("greeting", "Greeting", "hello")
///     .required()
///     .build();
/// assert_eq!(form.form_type(), Some("urn:example:settings"));
/// assert!(form.fields[2].required);
/// ```
#[derive(Debug, Clone)]
pub struct FormBuilder {
    form: DataForm,
}

impl Default for FormBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FormBuilder {
    /// An empty form for the user to fill (`type='form'`).
    pub fn new() -> Self {
        Self::of_type(DataFormType::Form)
    }

    /// An empty result form (`type='result'`), e.g. what a command reports when it completes.
    pub fn result() -> Self {
        Self::of_type(DataFormType::Result_)
    }

    fn of_type(type_: DataFormType) -> Self {
        FormBuilder {
            form: DataForm {
                type_,
                title: None,
                instructions: None,
                fields: Vec::new(),
            },
        }
    }

    /// Sets the hidden `FORM_TYPE` field (XEP-0068), which [`SubmittedForm::of_type`] checks.
    pub fn form_type(mut self, form_type: &str) -> Self {
        self.form.set_form_type(form_type.to_owned());
        self
    }

    /// Sets the form's title.
    pub fn title(mut self, title: &str) -> Self {
        self.form.title = Some(title.to_owned());
        self
    }

    /// Sets the form's instructions.
    pub fn instructions(mut self, instructions: &str) -> Self {
        self.form.instructions = Some(instructions.to_owned());
        self
    }

    /// Adds a boolean field (a check box), pre-set to `value`.
    pub fn boolean(self, var: &str, label: &str, value: bool) -> Self {
        self.field(
            var,
            FieldType::Boolean,
            label,
            if value { "1" } else { "0" },
        )
    }

    /// Adds a one-line text field, pre-filled with `value` (none when empty).
    pub fn text(self, var: &str, label: &str, value: &str) -> Self {
        self.field(var, FieldType::TextSingle, label, value)
    }

    /// Adds a single-choice list: `choices` are `(value, label)` pairs, `value` the preset.
    pub fn choice(self, var: &str, label: &str, choices: &[(&str, &str)], value: &str) -> Self {
        let mut builder = self.field(var, FieldType::ListSingle, label, value);
        if let Some(field) = builder.form.fields.last_mut() {
            field.options = choices
                .iter()
                .map(|(value, label)| Option_ {
                    label: Some((*label).to_owned()),
                    value: (*value).to_owned(),
                })
                .collect();
        }
        builder
    }

    /// Adds a read-only line of text.
    pub fn fixed(mut self, text: &str) -> Self {
        let mut field = Field::new("", FieldType::Fixed).with_value(text);
        field.var = None;
        self.form.fields.push(field);
        self
    }

    /// Marks the field added last as required.
    pub fn required(mut self) -> Self {
        if let Some(field) = self.form.fields.last_mut() {
            field.required = true;
        }
        self
    }

    fn field(mut self, var: &str, type_: FieldType, label: &str, value: &str) -> Self {
        let mut field = Field::new(var, type_);
        if !value.is_empty() {
            field = field.with_value(value);
        }
        field.label = Some(label.to_owned());
        self.form.fields.push(field);
        self
    }

    /// The finished form.
    pub fn build(self) -> DataForm {
        self.form
    }
}

impl From<FormBuilder> for Element {
    fn from(builder: FormBuilder) -> Element {
        builder.form.into()
    }
}

/// Why a submitted form is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// Not a parseable `<x xmlns='jabber:x:data'/>`.
    #[error("not a valid data form: {0}")]
    Malformed(String),
    /// The form's type is not `submit`.
    #[error("the form must be of type 'submit', not '{0}'")]
    NotSubmit(String),
    /// `FORM_TYPE` names another form.
    #[error("FORM_TYPE '{found}' is not {expected}")]
    WrongFormType {
        /// What the form said.
        found: String,
        /// What we asked for.
        expected: String,
    },
    /// A boolean field holds something else.
    #[error("field {field} must be a boolean, not '{value}'")]
    NotBoolean {
        /// The field name.
        field: String,
        /// What it held.
        value: String,
    },
    /// A single-valued field appears twice or has several values.
    #[error("field {0} is given more than once")]
    Repeated(String),
    /// A required field is missing or empty.
    #[error("field {0} is required")]
    Missing(String),
    /// A list field holds a value that is not one of its options.
    #[error("field {field} cannot be '{value}'")]
    NotAnOption {
        /// The field name.
        field: String,
        /// What it held.
        value: String,
    },
}

impl FormError {
    /// `bad-request` for a malformed submission, `not-acceptable` for one that breaks the
    /// form's rules.
    pub fn condition(&self) -> DefinedCondition {
        match self {
            FormError::Missing(_) | FormError::NotAnOption { .. } => {
                DefinedCondition::NotAcceptable
            }
            _ => DefinedCondition::BadRequest,
        }
    }
}

impl From<FormError> for StanzaError {
    fn from(error: FormError) -> StanzaError {
        stanza_error(error.condition(), Some(&error.to_string()))
    }
}

/// A form the user sent back (`type='submit'`), with typed accessors for its fields.
/// Fields the form did not ask for are ignored.
#[derive(Debug, Clone)]
pub struct SubmittedForm {
    form: DataForm,
}

impl SubmittedForm {
    /// Reads `<x xmlns='jabber:x:data' type='submit'/>`.
    pub fn parse(x: &Element) -> Result<Self, FormError> {
        let form =
            DataForm::try_from(x.clone()).map_err(|e| FormError::Malformed(e.to_string()))?;
        if form.type_ != DataFormType::Submit {
            let type_ = x.attr("type").unwrap_or_default().to_owned();
            return Err(FormError::NotSubmit(type_));
        }
        Ok(SubmittedForm { form })
    }

    /// The form carried in `payload` (e.g. a registration `<query/>` or a `<command/>`),
    /// if there is one.
    pub fn in_payload(payload: &Element) -> Result<Option<Self>, FormError> {
        payload
            .get_child("x", ns::DATA_FORMS)
            .map(Self::parse)
            .transpose()
    }

    /// Checks the `FORM_TYPE`: when the form names one, it must be `form_type`.
    pub fn of_type(self, form_type: &str) -> Result<Self, FormError> {
        match self.form.form_type() {
            Some(found) if found.trim() != form_type => Err(FormError::WrongFormType {
                found: found.to_owned(),
                expected: form_type.to_owned(),
            }),
            _ => Ok(self),
        }
    }

    /// The single value of field `var`, if the form has it.
    pub fn text(&self, var: &str) -> Result<Option<&str>, FormError> {
        let mut fields = self
            .form
            .fields
            .iter()
            .filter(|f| f.var.as_deref() == Some(var));
        let Some(field) = fields.next() else {
            return Ok(None);
        };
        if fields.next().is_some() || field.values.len() > 1 {
            return Err(FormError::Repeated(var.to_owned()));
        }
        Ok(field.values.first().map(String::as_str))
    }

    /// Field `var` as a non-empty text, or [`FormError::Missing`].
    pub fn required_text(&self, var: &str) -> Result<&str, FormError> {
        match self.text(var)?.map(str::trim) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(FormError::Missing(var.to_owned())),
        }
    }

    /// Field `var` as an XEP-0004 boolean (`0`/`1`/`false`/`true`); a field without a value
    /// is false, an absent field `None`.
    pub fn boolean(&self, var: &str) -> Result<Option<bool>, FormError> {
        if !self.has(var) {
            return Ok(None);
        }
        match self.text(var)?.map(str::trim) {
            None | Some("0") | Some("false") => Ok(Some(false)),
            Some("1") | Some("true") => Ok(Some(true)),
            Some(other) => Err(FormError::NotBoolean {
                field: var.to_owned(),
                value: other.to_owned(),
            }),
        }
    }

    /// Field `var` as one of `options`, or [`FormError::NotAnOption`].
    pub fn choice<'a>(&self, var: &str, options: &[&'a str]) -> Result<Option<&'a str>, FormError> {
        let Some(value) = self.text(var)? else {
            return Ok(None);
        };
        let value = value.trim();
        match options.iter().find(|o| **o == value) {
            Some(option) => Ok(Some(*option)),
            None => Err(FormError::NotAnOption {
                field: var.to_owned(),
                value: value.to_owned(),
            }),
        }
    }

    /// Whether the form has a field `var`.
    pub fn has(&self, var: &str) -> bool {
        self.form
            .fields
            .iter()
            .any(|f| f.var.as_deref() == Some(var))
    }

    /// The parsed form, for what the accessors do not cover.
    pub fn form(&self) -> &DataForm {
        &self.form
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitted(fields: &str) -> Result<SubmittedForm, FormError> {
        let xml = format!("<x xmlns='jabber:x:data' type='submit'>{fields}</x>");
        SubmittedForm::parse(&xml.parse().expect("test XML"))
    }

    #[test]
    fn a_built_form_reads_back_after_a_round_trip() {
        let element: Element = FormBuilder::new()
            .form_type("urn:t")
            .title("T")
            .instructions("Fill it")
            .boolean("b", "B", true)
            .text("name", "Name", "")
            .required()
            .choice("c", "C", &[("x", "Ex"), ("y", "Why")], "y")
            .fixed("read only")
            .into();
        let xml = String::from(&element);
        // A client answers by echoing the fields as a submission.
        let form = DataForm::try_from(element).expect("our own form parses");
        assert_eq!(form.form_type(), Some("urn:t"));
        assert_eq!(form.title.as_deref(), Some("T"));
        let name = form
            .fields
            .iter()
            .find(|f| f.var.as_deref() == Some("name"));
        assert!(name.expect("name field").required, "{xml}");
        let choice = form.fields.iter().find(|f| f.var.as_deref() == Some("c"));
        assert_eq!(choice.expect("c").options.len(), 2);
        assert!(xml.contains("<value>read only</value>"), "{xml}");
    }

    #[test]
    fn typed_accessors() {
        let form = submitted(
            "<field var='FORM_TYPE'><value>urn:t</value></field>\
             <field var='b'><value>true</value></field>\
             <field var='off'/>\
             <field var='name'><value> Ann </value></field>\
             <field var='c'><value>y</value></field>",
        )
        .expect("valid")
        .of_type("urn:t")
        .expect("right type");
        assert_eq!(form.boolean("b"), Ok(Some(true)));
        assert_eq!(form.boolean("off"), Ok(Some(false)));
        assert_eq!(form.boolean("absent"), Ok(None));
        assert_eq!(form.required_text("name"), Ok("Ann"));
        assert_eq!(form.choice("c", &["x", "y"]), Ok(Some("y")));
        assert_eq!(form.choice("absent", &["x"]), Ok(None));
    }

    #[test]
    fn malformed_submissions_are_bad_request_and_broken_rules_not_acceptable() {
        let cases: [(&str, &str, DefinedCondition); 7] = [
            (
                "<field var='b'><value>maybe</value></field>",
                "boolean",
                DefinedCondition::BadRequest,
            ),
            (
                "<field var='b'><value>1</value><value>0</value></field>",
                "more than once",
                DefinedCondition::BadRequest,
            ),
            (
                "<field var='b'><value>1</value></field><field var='b'/>",
                "more than once",
                DefinedCondition::BadRequest,
            ),
            (
                "<field var='FORM_TYPE'><value>urn:other</value></field>",
                "FORM_TYPE",
                DefinedCondition::BadRequest,
            ),
            (
                "<field><value>no var</value></field>",
                "not a valid data form",
                DefinedCondition::BadRequest,
            ),
            (
                "<field var='name'><value>  </value></field>",
                "required",
                DefinedCondition::NotAcceptable,
            ),
            (
                "<field var='c'><value>z</value></field>",
                "cannot be 'z'",
                DefinedCondition::NotAcceptable,
            ),
        ];
        for (fields, words, condition) in cases {
            let error = submitted(fields)
                .and_then(|f| f.of_type("urn:t"))
                .and_then(|f| {
                    f.boolean("b")?;
                    f.choice("c", &["x", "y"])?;
                    f.required_text("name")?;
                    Ok(f)
                })
                .expect_err(fields);
            assert!(error.to_string().contains(words), "{error} for {fields}");
            assert_eq!(error.condition(), condition, "{fields}");
            let stanza = StanzaError::from(error.clone());
            assert_eq!(stanza.defined_condition, condition);
            assert!(stanza.texts.values().any(|t| t.contains(words)));
        }
    }

    #[test]
    fn only_submit_forms_are_read() {
        for type_ in ["form", "result", "cancel"] {
            let xml = format!("<x xmlns='jabber:x:data' type='{type_}'/>");
            let error = SubmittedForm::parse(&xml.parse().expect("xml")).expect_err(type_);
            assert_eq!(error, FormError::NotSubmit(type_.to_owned()));
        }
        let query: Element = "<query xmlns='jabber:iq:register'/>".parse().expect("xml");
        assert!(matches!(SubmittedForm::in_payload(&query), Ok(None)));
    }
}
