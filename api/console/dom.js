// DOM helpers. Every node is built with createElement and text nodes, never from an HTML
// string, so nothing the API returns (a prompt, a model's answer) can become markup; the
// page's CSP (require-trusted-types-for 'script') refuses the string sinks anyway.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/** An element: `h('td', {class: 'num', dataset: {id}}, 'text', child)`. */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Show or hide an element (the `hidden` attribute: no inline style under the CSP). */
export function show(node, visible = true) {
  node.hidden = !visible;
}

/** Set a message element's text and show it; an empty message hides it. */
export function say(node, message) {
  node.textContent = message || '';
  node.hidden = !message;
}

const pad = (n) => String(n).padStart(2, '0');

/**
 * A timestamp of the API (ISO 8601) in the reader's time zone, `2025-01-31 14:05:09`
 * (`14:05:09` alone when it is today); a dash when unset. The full value is in `title`.
 */
export function formatTime(iso) {
  if (!iso) return '—';
  const t = new Date(iso);
  const time = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
  if (t.toDateString() === new Date().toDateString()) return time;
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${time}`;
}

/** A status badge; its class picks the colour. */
export function statusBadge(status) {
  return h('span', { class: `status status-${status}` }, status);
}
