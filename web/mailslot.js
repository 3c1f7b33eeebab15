/*! mailslot.js: sign-up forms and cookie-free telemetry for a mailslot edge.
 * <script defer src="https://EDGE/v1/mailslot.js" data-property="SITE"></script>
 * No cookies, no fingerprinting; Global Privacy Control turns telemetry off. */
(() => {
  'use strict';

  // Everything that runs in the page goes through this: a bug here must never
  // break the marketing site that loads us.
  const safe = (fn) => function (...args) {
    try {
      return fn.apply(this, args);
    } catch (_) {
      return undefined;
    }
  };

  safe(() => {
    if (window.mailslot && window.mailslot.loaded) return; // included twice

    // currentScript is only set while this file first runs; it is null for a
    // module, so fall back to finding our own tag.
    const me = document.currentScript ||
      document.querySelector('script[src*="/v1/mailslot.js"]');
    if (!me || !me.src) return;
    const edge = (me.getAttribute('data-edge') || new URL(me.src, location.href).origin).replace(/\/+$/, '');
    const property = me.getAttribute('data-property') || '';
    // Global Privacy Control: no telemetry at all. Sign-ups still work,
    // because the visitor asks for those.
    const telemetry = navigator.globalPrivacyControl !== true && property !== '';

    const UTM = ['source', 'medium', 'campaign', 'term', 'content'];
    const STORE = 'mailslot:utm';
    const TIMEOUT_MS = 15000;
    // The edge's limits: free text is short, names are identifiers.
    const clip = (v, n = 500) => String(v).slice(0, n);
    const ident = (v) => String(v).replace(/[^A-Za-z0-9._:-]+/g, '-').slice(0, 64);

    // The landing URL's UTM wins; without one, the UTM this tab landed with
    // earlier (sessionStorage: this tab only, gone when it closes).
    const utm = (() => {
      const q = new URLSearchParams(location.search);
      const found = {};
      for (const k of UTM) {
        const v = q.get('utm_' + k);
        if (v) found[k] = clip(v, 200);
      }
      let store = null;
      try {
        store = window.sessionStorage;
      } catch (_) { /* storage blocked */ }
      try {
        if (Object.keys(found).length) {
          if (store) store.setItem(STORE, JSON.stringify(found));
          return found;
        }
        const saved = store && JSON.parse(store.getItem(STORE) || 'null');
        if (saved && typeof saved === 'object') {
          for (const k of UTM) {
            if (typeof saved[k] === 'string' && saved[k]) found[k] = clip(saved[k], 200);
          }
        }
      } catch (_) { /* storage full or corrupt */ }
      return found;
    })();
    const hasUTM = Object.keys(utm).length > 0;

    // Path only: a query string can hold personal data (?email=...).
    const page = () => clip(location.pathname);
    const referrer = () => {
      try {
        const u = new URL(document.referrer);
        return clip(u.origin + u.pathname);
      } catch (_) {
        return '';
      }
    };

    const cleanProps = (props) => {
      const out = {};
      let n = 0;
      for (const [k, v] of Object.entries(props || {})) {
        if (n >= 20) break;
        if (typeof v === 'string') out[ident(k)] = clip(v, 256);
        else if (typeof v === 'boolean' || (typeof v === 'number' && isFinite(v))) out[ident(k)] = v;
        else continue;
        n++;
      }
      return out;
    };

    const event = (type, name, props) => {
      const ev = { type, property, page: page(), ts: new Date().toISOString() };
      if (name) ev.name = ident(name);
      const ref = referrer();
      if (ref) ev.referrer = ref;
      if (hasUTM) ev.utm = utm;
      if (props) ev.props = cleanProps(props);
      return ev;
    };

    // A beacon is a text/plain POST: no CORS preflight, and it survives the
    // page being closed. fetch with keepalive is the fallback.
    const send = (ev) => {
      if (!telemetry) return;
      const url = edge + '/v1/events';
      const body = JSON.stringify(ev);
      let queued = false;
      try {
        queued = typeof navigator.sendBeacon === 'function' && navigator.sendBeacon(url, body);
      } catch (_) { /* queue full or blocked */ }
      if (!queued && typeof fetch === 'function') {
        fetch(url, {
          method: 'POST', body, keepalive: true, mode: 'cors', credentials: 'omit',
          headers: { 'Content-Type': 'text/plain' },
        }).catch(() => {});
      }
    };

    const uuid = () => {
      const c = window.crypto;
      if (typeof c.randomUUID === 'function') return c.randomUUID(); // secure contexts only
      const b = c.getRandomValues(new Uint8Array(16));
      b[6] = (b[6] & 15) | 64;
      b[8] = (b[8] & 63) | 128;
      const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join('');
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    };

    // hidden sets a hidden input, creating it if the form has none, so that
    // the native post (our fallback) carries the same values as the JSON one.
    const hidden = (form, name, value, overwrite) => {
      let input = form.elements.namedItem(name);
      if (input && !(input instanceof HTMLInputElement)) return; // a radio group or the like
      if (!input) {
        input = document.createElement('input');
        input.type = 'hidden';
        input.name = name;
        form.appendChild(input);
      }
      if (overwrite || !input.value) input.value = value;
    };

    const statusOf = (form) => {
      let el = form.querySelector('[data-mailslot-status]');
      if (!el) {
        el = document.createElement('p');
        el.setAttribute('data-mailslot-status', '');
        el.className = 'mailslot-status';
        form.appendChild(el);
      }
      // A live region must exist before it changes, or readers miss it.
      if (!el.hasAttribute('aria-live')) el.setAttribute('aria-live', 'polite');
      if (!el.hasAttribute('role')) el.setAttribute('role', 'status');
      return el;
    };

    const setState = (form, state, text) => {
      form.setAttribute('data-mailslot-state', state);
      form.setAttribute('aria-busy', state === 'sending' ? 'true' : 'false');
      statusOf(form).textContent = text;
    };

    // enhance adds what the script knows to the form as hidden fields, so the
    // JSON post and the native fallback send the same sign-up (the edge
    // matches a retried idempotency key against the sign-up's content).
    const enhance = (form) => {
      if (form.hasAttribute('data-mailslot-ready')) return;
      // Values the page author wrote are kept; empty ones get the landing UTM.
      for (const k of UTM) {
        if (utm[k]) hidden(form, 'utm_' + k, utm[k], false);
      }
      if (property) hidden(form, 'property', property, false);
      hidden(form, 'page', page(), false);
      const ref = referrer();
      if (ref) hidden(form, 'referrer', ref, false);
      statusOf(form);
      form.setAttribute('data-mailslot-ready', '');
    };

    const clearErrors = (form) => {
      for (const el of form.querySelectorAll('[data-mailslot-error]')) {
        const field = form.querySelector(`[aria-describedby~="${el.id}"]`);
        if (field) {
          const rest = field.getAttribute('aria-describedby').split(/\s+/).filter((id) => id && id !== el.id);
          if (rest.length) field.setAttribute('aria-describedby', rest.join(' '));
          else field.removeAttribute('aria-describedby');
          field.removeAttribute('aria-invalid');
        }
        el.remove();
      }
    };

    const FIELD_TEXT = {
      email: 'Please enter a valid email address.',
      name: 'Please check your name.',
    };

    let nextID = 0;
    // showErrors marks each field the edge rejected and says why; codes for
    // fields the visitor cannot see are shown as they are.
    const showErrors = (form, body) => {
      const fields = (body && typeof body.fields === 'object' && body.fields) || {};
      let first = null;
      const hiddenCodes = [];
      for (const [name, code] of Object.entries(fields)) {
        const input = form.elements.namedItem(name);
        if (!(input instanceof HTMLElement) || input.type === 'hidden') {
          hiddenCodes.push(`${name}: ${code}`);
          continue;
        }
        const msg = document.createElement('span');
        msg.id = `mailslot-error-${++nextID}`;
        msg.className = 'mailslot-error';
        msg.setAttribute('data-mailslot-error', '');
        msg.textContent = FIELD_TEXT[name] || `Please check this field (${code}).`;
        input.insertAdjacentElement('afterend', msg);
        input.setAttribute('aria-invalid', 'true');
        input.setAttribute('aria-describedby', `${input.getAttribute('aria-describedby') || ''} ${msg.id}`.trim());
        if (!first) first = input;
      }
      let text;
      if (hiddenCodes.length) text = `This form could not be sent (${hiddenCodes.join(', ')}).`;
      else if (first) text = 'Please check the highlighted field.';
      else text = `Sign-up failed (${(body && body.error) || 'error'}). Please try again.`;
      setState(form, 'error', text);
      if (first) first.focus();
    };

    const sending = new WeakSet();

    // nativeSubmit posts the form the way it would go without JavaScript. It
    // does not fire "submit" again, and calling the prototype's method still
    // works when the form has a field named "submit".
    const nativeSubmit = (form) => {
      sending.delete(form);
      HTMLFormElement.prototype.submit.call(form);
    };

    const formName = (form) => form.getAttribute('data-mailslot') || form.id || form.getAttribute('name') || '';

    const collect = (form) => {
      const data = {};
      const utmData = {};
      for (const [k, v] of new FormData(form)) {
        // Empty fields are left out (so the honeypot is only sent when a bot
        // filled it); the key travels as a header; redirect is for forms only.
        if (typeof v !== 'string' || v === '' || k === 'idempotency_key' || k === 'redirect') continue;
        if (k.startsWith('utm_')) {
          if (UTM.includes(k.slice(4))) utmData[k.slice(4)] = v;
          continue;
        }
        data[k] = v;
      }
      if (Object.keys(utmData).length) data.utm = utmData;
      return data;
    };

    const submit = async (form) => {
      enhance(form);
      clearErrors(form);
      // One key per attempt; the native fallback carries the same key so the
      // edge stores one lead if our fetch did arrive after all.
      const key = uuid();
      hidden(form, 'idempotency_key', key, true);
      const data = collect(form);
      setState(form, 'sending', form.getAttribute('data-mailslot-sending') || 'Sending…');
      const ctl = typeof AbortController === 'function' ? new AbortController() : null;
      const timer = setTimeout(() => ctl && ctl.abort(), TIMEOUT_MS);
      let res;
      try {
        res = await fetch(edge + '/v1/leads', {
          method: 'POST',
          mode: 'cors',
          credentials: 'omit',
          headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'Idempotency-Key': key },
          body: JSON.stringify(data),
          signal: ctl ? ctl.signal : undefined,
        });
      } catch (_) {
        // Offline, edge unreachable, CORS refused, or too slow: the plain
        // HTML post still gets the sign-up through.
        send(event('form_submit', formName(form), { outcome: 'fallback' }));
        nativeSubmit(form);
        return;
      } finally {
        clearTimeout(timer);
      }
      sending.delete(form);
      let body = null;
      try {
        body = await res.json();
      } catch (_) { /* not JSON */ }
      if (res.ok) {
        send(event('form_submit', formName(form), { outcome: 'accepted' }));
        form.reset();
        setState(form, 'success', form.getAttribute('data-mailslot-success') || 'Thanks, you are signed up.');
        return;
      }
      send(event('form_submit', formName(form), { outcome: res.status < 500 ? 'rejected' : 'error' }));
      if (res.status === 429) setState(form, 'error', 'Too many attempts. Please wait a moment and try again.');
      else if (res.status < 500) showErrors(form, body);
      else setState(form, 'error', 'We could not save your sign-up just now. Please try again.');
    };

    document.addEventListener('submit', safe((e) => {
      const form = e.target;
      if (!(form instanceof HTMLFormElement) || !form.hasAttribute('data-mailslot') || e.defaultPrevented) return;
      if (typeof fetch !== 'function' || typeof FormData !== 'function') return; // the plain post will do
      e.preventDefault();
      if (sending.has(form)) return; // a double click
      sending.add(form);
      submit(form).catch(() => {
        // A bug of ours must not lose the sign-up.
        try {
          nativeSubmit(form);
        } catch (_) { /* nothing left to do */ }
      });
    }));

    document.addEventListener('click', safe((e) => {
      const el = e.target instanceof Element && e.target.closest('[data-mailslot-click]');
      if (el) send(event('click', el.getAttribute('data-mailslot-click')));
    }), true);

    const start = safe(() => {
      for (const form of document.querySelectorAll('form[data-mailslot]')) enhance(form);
    });
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
    else start();

    send(event('page_view'));
    // A page restored from the back/forward cache is a new view.
    window.addEventListener('pageshow', safe((e) => {
      if (e.persisted) send(event('page_view'));
    }));

    window.mailslot = {
      loaded: true,
      // track sends a custom event; it does nothing under Global Privacy Control.
      track: safe((name, props) => send(event('custom', name, props))),
    };
  })();
})();
