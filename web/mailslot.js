/*! mailslot.js: sign-up forms and cookie-free telemetry for a mailslot edge.
 * <script defer src="https://EDGE/v1/mailslot.js" data-property="SITE"></script>
 * No cookies, no fingerprinting; Global Privacy Control turns telemetry off. */
(() => {
  'use strict';
  // Every entry point goes through safe: a bug of ours must never break the
  // page that loads us.
  const safe = (fn) => function (...a) { try { return fn.apply(this, a); } catch (_) { return undefined; } };

  safe(() => {
    if (window.mailslot && window.mailslot.loaded) return; // included twice
    // currentScript is set only while this file first runs (null for modules).
    const me = document.currentScript || document.querySelector('script[src*="/v1/mailslot.js"]');
    if (!me || !me.src) return;
    const edge = (me.getAttribute('data-edge') || new URL(me.src, location.href).origin).replace(/\/+$/, '');
    const property = me.getAttribute('data-property') || '';
    // Global Privacy Control: no telemetry at all. Sign-ups still work: the
    // visitor asks for those.
    const telemetry = navigator.globalPrivacyControl !== true && property !== '';
    const UTM = ['source', 'medium', 'campaign', 'term', 'content'];
    // The edge's limits: free text is short, names are identifiers.
    const clip = (v, n = 500) => String(v).slice(0, n);
    const ident = (v) => String(v).replace(/[^A-Za-z0-9._:-]+/g, '-').slice(0, 64);

    // The landing URL's UTM wins; without one, the UTM this tab landed with
    // (sessionStorage: this tab only, gone when it closes; never a cookie).
    const utm = (() => {
      const q = new URLSearchParams(location.search);
      const found = {};
      for (const k of UTM) if (q.get('utm_' + k)) found[k] = clip(q.get('utm_' + k), 200);
      try {
        const store = window.sessionStorage;
        if (Object.keys(found).length) {
          store.setItem('mailslot:utm', JSON.stringify(found));
        } else {
          const saved = JSON.parse(store.getItem('mailslot:utm')) || {};
          for (const k of UTM) if (typeof saved[k] === 'string' && saved[k]) found[k] = clip(saved[k], 200);
        }
      } catch (_) { /* storage blocked, full or corrupt */ }
      return found;
    })();

    // Path only: a query string can carry personal data (?email=...).
    const page = () => clip(location.pathname);
    const referrer = () => {
      try { const u = new URL(document.referrer); return clip(u.origin + u.pathname); } catch (_) { return ''; }
    };

    const event = (type, name, props) => {
      const ev = { type, property, page: page(), ts: new Date().toISOString() };
      if (name) ev.name = ident(name);
      if (referrer()) ev.referrer = referrer();
      if (Object.keys(utm).length) ev.utm = utm;
      if (props) {
        ev.props = {};
        for (const [k, v] of Object.entries(props).slice(0, 20)) {
          if (typeof v === 'string') ev.props[ident(k)] = clip(v, 256);
          else if (typeof v === 'boolean' || (typeof v === 'number' && isFinite(v))) ev.props[ident(k)] = v;
        }
      }
      return ev;
    };

    // A beacon is a text/plain POST: no CORS preflight, and it outlives the
    // page. fetch with keepalive is the fallback.
    const send = (ev) => {
      if (!telemetry) return;
      const url = edge + '/v1/events';
      const body = JSON.stringify(ev);
      let queued = false;
      try { queued = navigator.sendBeacon(url, body); } catch (_) { /* missing or blocked */ }
      if (!queued && window.fetch) {
        fetch(url, { method: 'POST', body, keepalive: true, credentials: 'omit', headers: { 'Content-Type': 'text/plain' } })
          .catch(() => {});
      }
    };

    const uuid = () => {
      if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
      const b = crypto.getRandomValues(new Uint8Array(16));
      b[6] = (b[6] & 15) | 64;
      b[8] = (b[8] & 63) | 128;
      const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join('');
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    };

    // hidden sets a hidden field, adding it when the form has none.
    const hidden = (form, name, value, overwrite) => {
      let input = form.elements.namedItem(name);
      if (input && !(input instanceof HTMLInputElement)) return; // a radio group or the like
      if (!input) {
        input = Object.assign(document.createElement('input'), { type: 'hidden', name });
        form.appendChild(input);
      }
      if (overwrite || !input.value) input.value = value;
    };

    const status = (form) => {
      let el = form.querySelector('[data-mailslot-status]');
      if (!el) {
        el = Object.assign(document.createElement('p'), { className: 'mailslot-status' });
        el.setAttribute('data-mailslot-status', '');
        form.appendChild(el);
      }
      // A live region must exist before it changes, or screen readers miss it.
      if (!el.hasAttribute('aria-live')) el.setAttribute('aria-live', 'polite');
      if (!el.hasAttribute('role')) el.setAttribute('role', 'status');
      return el;
    };

    const setState = (form, state, text) => {
      form.setAttribute('data-mailslot-state', state);
      form.setAttribute('aria-busy', String(state === 'sending'));
      status(form).textContent = text;
    };

    // enhance writes what the script knows into the form as hidden fields, so
    // that the JSON post and the native fallback send the same sign-up: the
    // edge matches a retried idempotency key against the sign-up's content.
    // Values the page author wrote are kept.
    const enhance = (form) => {
      if (form.hasAttribute('data-mailslot-ready')) return;
      for (const k of UTM) if (utm[k]) hidden(form, 'utm_' + k, utm[k], false);
      if (property) hidden(form, 'property', property, false);
      hidden(form, 'page', page(), false);
      if (referrer()) hidden(form, 'referrer', referrer(), false);
      status(form);
      form.setAttribute('data-mailslot-ready', '');
    };

    const clearErrors = (form) => {
      for (const input of form.querySelectorAll('[data-mailslot-invalid]')) {
        const before = input.getAttribute('data-mailslot-invalid');
        if (before) input.setAttribute('aria-describedby', before);
        else input.removeAttribute('aria-describedby');
        input.removeAttribute('aria-invalid');
        input.removeAttribute('data-mailslot-invalid');
      }
      for (const el of form.querySelectorAll('.mailslot-error')) el.remove();
    };

    // Bot challenges. Turnstile and hCaptcha widgets put their token in the
    // form (cf-turnstile-response, h-captcha-response), so it goes with the
    // form's fields as it is. For a proof of work (ALTCHA's protocol) the
    // script fetches a challenge, finds the number whose SHA-256 with the
    // salt is the challenge, and puts the solution in an "altcha" field, so
    // the JSON post and the native fallback both carry it. Solving starts
    // when the visitor first touches the form and runs in small chunks, so
    // the page stays responsive.
    const formProperty = (form) => {
      const f = form.elements.namedItem('property');
      return (f instanceof HTMLInputElement && f.value) || property;
    };
    const toHex = (buf) => Array.from(new Uint8Array(buf), (x) => (x + 256).toString(16).slice(1)).join('');
    const solve = async (c) => {
      if (!window.crypto || !crypto.subtle || !window.TextEncoder) return null; // insecure context: no SHA-256
      const enc = new TextEncoder();
      const chunk = 200;
      for (let start = 0; start <= c.maxnumber; start += chunk) {
        const end = Math.min(start + chunk - 1, c.maxnumber);
        const tries = [];
        for (let n = start; n <= end; n++) tries.push(crypto.subtle.digest('SHA-256', enc.encode(c.salt + n)));
        const sums = await Promise.all(tries);
        for (let i = 0; i < sums.length; i++) {
          if (toHex(sums[i]) === c.challenge) {
            return btoa(JSON.stringify({ algorithm: c.algorithm, challenge: c.challenge, number: start + i, salt: c.salt, signature: c.signature }));
          }
        }
        await new Promise((r) => setTimeout(r, 0)); // let the page breathe
      }
      return null;
    };
    const solutions = new WeakMap(); // form -> { at, promise }
    const challengeFor = (form) => {
      const p = formProperty(form);
      const have = solutions.get(form);
      // A challenge lives ten minutes at the edge; start over well before.
      if (have && have.property === p && Date.now() - have.at < 8 * 60 * 1000) return have.promise;
      const promise = (async () => {
        if (!p || !window.fetch) return null;
        const res = await fetch(edge + '/v1/challenge?property=' + encodeURIComponent(p), { credentials: 'omit', headers: { Accept: 'application/json' } });
        if (!res.ok) return null;
        const c = await res.json();
        if (!c || c.kind !== 'pow') return '';
        return solve(c);
      })().catch(() => null);
      solutions.set(form, { at: Date.now(), property: p, promise });
      return promise;
    };
    const prepareChallenge = (form) => {
      if (form.hasAttribute('data-mailslot-challenge-started')) return;
      form.setAttribute('data-mailslot-challenge-started', '');
      challengeFor(form);
    };

    let nextID = 0;
    // showErrors marks each field the edge rejected; codes for fields the
    // visitor cannot see or fix are shown as they are.
    const showErrors = (form, body) => {
      let first = null;
      const other = [];
      for (const [name, code] of Object.entries((body && body.fields) || {})) {
        const input = form.elements.namedItem(name);
        if (!(input instanceof HTMLElement) || input.type === 'hidden') {
          other.push(`${name}: ${code}`);
          continue;
        }
        const msg = Object.assign(document.createElement('span'), { id: `mailslot-error-${++nextID}`, className: 'mailslot-error' });
        msg.textContent = name === 'email' ? 'Please enter a valid email address.' : `Please check this field (${code}).`;
        input.insertAdjacentElement('afterend', msg);
        const before = input.getAttribute('aria-describedby') || '';
        input.setAttribute('data-mailslot-invalid', before);
        input.setAttribute('aria-describedby', `${before} ${msg.id}`.trim());
        input.setAttribute('aria-invalid', 'true');
        first = first || input;
      }
      setState(form, 'error', other.length ? `This form could not be sent (${other.join(', ')}).`
        : first ? 'Please check the highlighted field.'
          : `Sign-up failed (${(body && body.error) || 'error'}). Please try again.`);
      if (first) first.focus();
    };

    const sending = new WeakSet();
    // nativeSubmit posts the form as it goes without JavaScript. It fires no
    // "submit" event, and the prototype's method works even when a field is
    // named "submit".
    const nativeSubmit = (form) => {
      sending.delete(form);
      HTMLFormElement.prototype.submit.call(form);
    };
    const formName = (form) => form.getAttribute('data-mailslot') || form.id || form.getAttribute('name') || '';

    const submit = async (form) => {
      enhance(form);
      clearErrors(form);
      setState(form, 'sending', form.getAttribute('data-mailslot-sending') || 'Sending…');
      // A proof of work, when the property asks for one ('' when it does
      // not, null when it could not be solved here: the native post then
      // goes without, and the edge applies the property's no-JS policy).
      const altcha = await challengeFor(form);
      solutions.delete(form); // a solution is good for one sign-up
      form.removeAttribute('data-mailslot-challenge-started');
      if (altcha === null) {
        nativeSubmit(form);
        return;
      }
      if (altcha) hidden(form, 'altcha', altcha, true);
      // One key per attempt. The native fallback carries the same key, so
      // the edge stores one lead if our request got through after all.
      const key = uuid();
      hidden(form, 'idempotency_key', key, true);
      const data = {};
      const utmData = {};
      for (const [k, v] of new FormData(form)) {
        // Empty fields stay out (the honeypot goes only when a bot filled it);
        // the key goes as a header; redirect is for native posts only.
        if (typeof v !== 'string' || v === '' || k === 'idempotency_key' || k === 'redirect') continue;
        if (k.startsWith('utm_')) utmData[k.slice(4)] = v;
        else data[k] = v;
      }
      if (Object.keys(utmData).length) data.utm = utmData;
      setState(form, 'sending', form.getAttribute('data-mailslot-sending') || 'Sending…');
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), 15000);
      let res;
      try {
        res = await fetch(edge + '/v1/leads', {
          method: 'POST',
          credentials: 'omit',
          headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'Idempotency-Key': key },
          body: JSON.stringify(data),
          signal: ctl.signal,
        });
      } catch (_) {
        // Offline, edge unreachable, CORS refused or too slow: the plain
        // HTML post still gets the sign-up through.
        send(event('form_submit', formName(form), { outcome: 'fallback' }));
        nativeSubmit(form);
        return;
      } finally {
        clearTimeout(timer);
      }
      sending.delete(form);
      const body = await res.json().catch(() => null);
      send(event('form_submit', formName(form), { outcome: res.ok ? 'accepted' : res.status < 500 ? 'rejected' : 'error' }));
      if (res.ok) {
        form.reset();
        setState(form, 'success', form.getAttribute('data-mailslot-success') || 'Thanks, you are signed up.');
      } else if (res.status === 429) {
        setState(form, 'error', 'Too many attempts. Please wait a moment and try again.');
      } else if (res.status < 500) {
        showErrors(form, body);
      } else {
        setState(form, 'error', 'We could not save your sign-up just now. Please try again.');
      }
    };

    document.addEventListener('submit', safe((e) => {
      const form = e.target;
      if (!(form instanceof HTMLFormElement) || !form.hasAttribute('data-mailslot') || e.defaultPrevented) return;
      if (!window.fetch || !window.AbortController) return; // the plain post will do
      e.preventDefault();
      if (sending.has(form)) return; // a double click
      sending.add(form);
      // A bug of ours must not lose the sign-up.
      submit(form).catch(() => { try { nativeSubmit(form); } catch (_) { /* nothing left to do */ } });
    }));

    document.addEventListener('focusin', safe((e) => {
      const form = e.target instanceof Element && e.target.closest('form[data-mailslot]');
      if (form && window.fetch) prepareChallenge(form);
    }));

    document.addEventListener('click', safe((e) => {
      const el = e.target instanceof Element && e.target.closest('[data-mailslot-click]');
      if (el) send(event('click', el.getAttribute('data-mailslot-click')));
    }), true);

    const start = safe(() => { for (const form of document.querySelectorAll('form[data-mailslot]')) enhance(form); });
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
    else start();

    send(event('page_view'));
    // A page restored from the back/forward cache is a new view.
    window.addEventListener('pageshow', safe((e) => { if (e.persisted) send(event('page_view')); }));

    window.mailslot = {
      loaded: true,
      // track sends a custom event (never under Global Privacy Control).
      track: safe((name, props) => send(event('custom', name, props))),
    };
  })();
})();
