// The sign-in page: the login `herd analysts add` printed; Postgres checks
// the password.
import { post } from './api.js';
import { h } from './dom.js';

export function loginPage(onSignedIn, next = '') {
  const user = h('input', { id: 'login-user', name: 'user', autocomplete: 'username', required: true, autofocus: true, spellcheck: false });
  const pass = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const msg = h('p', { class: 'error', role: 'alert', hidden: true });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', {
    class: 'login',
    onsubmit: async (e) => {
      e.preventDefault();
      msg.hidden = true;
      button.disabled = true;
      try {
        const s = await post('/api/login', { user: user.value.trim(), password: pass.value }, { quiet401: true });
        onSignedIn(s);
      } catch (err) {
        msg.textContent = err.status === 429 ? `Too many sign-in attempts. Try again${err.retryAfter ? ` in ${err.retryAfter} s` : ' later'}.` : err.message;
        msg.hidden = false;
        pass.select();
      } finally {
        button.disabled = false;
      }
    },
  },
  h('h1', {}, 'herd console'),
  next.startsWith('/q/') ? h('p', { class: 'notice' }, 'Sign in to open the saved query ', h('strong', {}, decodeURIComponent(next.slice(3).split('?')[0])), '.') : null,
  h('p', { class: 'hint' }, 'Sign in with the database login you were given (', h('code', {}, 'herd analysts add NAME'), ' prints it). Everything you run uses your own role.'),
  h('label', { for: 'login-user' }, 'User'), user,
  h('label', { for: 'login-password' }, 'Password'), pass,
  msg, button);
  setTimeout(() => user.focus(), 0);
  return h('div', { class: 'login-page' }, form);
}
