// A small, strict XML parser for the unit tests (node has no DOMParser). It builds the
// element-like objects the page's decoders read (localName, namespaceURI, getAttribute,
// children, textContent) and throws on anything that is not well-formed: a raw `<` or `&`
// in text, a quote that ends an attribute early, an unknown entity, mismatched tags. That
// strictness is what makes the escaping tests meaningful.

const NAME = "[A-Za-z_][\\w.-]*(?::[A-Za-z_][\\w.-]*)?";
const ENTITY = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };

function unescape(text) {
  if (/<|&(?!(lt|gt|amp|quot|apos|#\d+|#x[0-9A-Fa-f]+);)/.test(text)) {
    throw new Error(`not well-formed text: ${JSON.stringify(text)}`);
  }
  return text.replace(/&(#x[0-9A-Fa-f]+|#\d+|\w+);/g, (_, e) =>
    e[0] === "#" ? String.fromCodePoint(e[1] === "x" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10)) : ENTITY[e],
  );
}

class Element {
  constructor(name, attrs, parentNs) {
    this.attrs = attrs;
    this.ns = { ...parentNs };
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "xmlns") this.ns[""] = v;
      else if (k.startsWith("xmlns:")) this.ns[k.slice(6)] = v;
    }
    const [prefix, local] = name.includes(":") ? name.split(":") : ["", name];
    if (!(prefix in this.ns) && prefix !== "") throw new Error(`unbound prefix ${prefix}`);
    this.localName = local;
    this.namespaceURI = this.ns[prefix] ?? null;
    this.children = [];
    this.nodes = [];
  }
  getAttribute(name) {
    return Object.hasOwn(this.attrs, name) ? this.attrs[name] : null;
  }
  get textContent() {
    return this.nodes.map((n) => (typeof n === "string" ? n : n.textContent)).join("");
  }
}

/** Parses one XML document; returns its root element. */
export function parseXml(text) {
  let rest = text.replace(/^<\?xml[^>]*\?>/, "").trim();
  const stack = [];
  let root = null;
  const tag = new RegExp(`^<(/?)(${NAME})((?:\\s+${NAME}\\s*=\\s*(?:'[^']*'|"[^"]*"))*)\\s*(/?)>`);
  const attr = new RegExp(`(${NAME})\\s*=\\s*(?:'([^']*)'|"([^"]*)")`, "g");
  while (rest.length > 0) {
    if (rest[0] !== "<") {
      const end = rest.indexOf("<");
      const raw = end === -1 ? rest : rest.slice(0, end);
      if (stack.length === 0) {
        if (raw.trim()) throw new Error("text outside the root element");
      } else stack.at(-1).nodes.push(unescape(raw));
      rest = end === -1 ? "" : rest.slice(end);
      continue;
    }
    const m = tag.exec(rest);
    if (!m) throw new Error(`not well-formed at ${JSON.stringify(rest.slice(0, 40))}`);
    rest = rest.slice(m[0].length);
    const [, closing, name, attrText, selfClosing] = m;
    if (closing) {
      const open = stack.pop();
      if (!open || open.name !== name || attrText) throw new Error(`mismatched </${name}>`);
      continue;
    }
    if (root && stack.length === 0) throw new Error("a second root element");
    const attrs = {};
    for (const a of attrText.matchAll(attr)) {
      if (Object.hasOwn(attrs, a[1])) throw new Error(`duplicate attribute ${a[1]}`);
      attrs[a[1]] = unescape(a[2] ?? a[3]);
    }
    const el = new Element(name, attrs, stack.at(-1)?.ns ?? { xml: "http://www.w3.org/XML/1998/namespace" });
    el.name = name;
    if (stack.length > 0) {
      stack.at(-1).children.push(el);
      stack.at(-1).nodes.push(el);
    } else root = el;
    if (!selfClosing) stack.push(el);
  }
  if (!root || stack.length > 0) throw new Error("unclosed element");
  return root;
}
