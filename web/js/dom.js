// nsplay DOM helpers shared by the page modules.

export const $ = (sel) => document.querySelector(sel);

// el('tr', { class: 'x' }, child, 'text', null): an element with attributes
// and children (null children are skipped).
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) if (c != null) node.append(c);
  return node;
}
