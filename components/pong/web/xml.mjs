// XML for the XMPP stream without the DOM, so it runs (and is unit-tested) in node too.
//
// Encoding is string building in which every attribute value and every text goes through
// escape(): xml() returns Markup, and only Markup is ever inserted unescaped. Decoding reads
// "element-like" objects: a DOM Element from DOMParser in the browser, or any object with
// localName, namespaceURI, getAttribute(), children and textContent (the unit tests' parser).

// Characters XML 1.0 cannot carry at all (most C0 controls, lone surrogates, U+FFFE/U+FFFF):
// a server would end the stream with not-well-formed, so they are dropped.
const INVALID = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/gu;
const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" };
const NAME = /^[A-Za-z_][\w.-]*(:[A-Za-z_][\w.-]*)?$/;

/** Escapes text for XML content and (single- or double-quoted) attribute values. */
export function escape(text) {
  return String(text).replace(INVALID, "").replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

/** Serialised XML made by xml(); the only thing inserted into XML unescaped. */
export class Markup {
  constructor(text) {
    this.text = text;
  }
  toString() {
    return this.text;
  }
}

/**
 * `<name attr='value'>children</name>`. Attributes whose value is null or undefined are left
 * out; children are Markup (inserted as is), strings or numbers (escaped text), or
 * null/undefined/false (skipped); arrays are flattened.
 */
export function xml(name, attrs = {}, ...children) {
  if (!NAME.test(name)) throw new Error(`not an XML name: ${name}`);
  let out = `<${name}`;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (!NAME.test(key)) throw new Error(`not an XML name: ${key}`);
    out += ` ${key}='${escape(value)}'`;
  }
  const inner = children
    .flat(Infinity)
    .filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Markup ? c.text : escape(c)))
    .join("");
  return new Markup(inner ? `${out}>${inner}</${name}>` : `${out}/>`);
}

/** The child elements of `el` with local name `name` (any if null) in namespace `ns` (any if undefined). */
export function children(el, name = null, ns = undefined) {
  const out = [];
  for (const c of Array.from(el?.children ?? [])) {
    if ((name === null || c.localName === name) && (ns === undefined || c.namespaceURI === ns)) {
      out.push(c);
    }
  }
  return out;
}

/** The first such child, or null. */
export function child(el, name, ns = undefined) {
  return children(el, name, ns)[0] ?? null;
}

/** The text of the first such child, or null when there is none. */
export function childText(el, name, ns = undefined) {
  const c = child(el, name, ns);
  return c ? c.textContent : null;
}

/** An attribute's value, or null. */
export function attr(el, name) {
  return el?.getAttribute?.(name) ?? null;
}
