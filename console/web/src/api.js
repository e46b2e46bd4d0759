// The console's JSON API client: the session's CSRF token goes on every
// state-changing request, and errors carry the server's message unchanged.
export const session = { user: '', admin: false, csrf: '' };

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.position = body && body.position;
    this.detail = body && body.detail;
    this.hint = body && body.hint;
    this.retryAfter = 0;
  }
}

let onUnauthorized = () => {};
export function whenSignedOut(f) {
  onUnauthorized = f;
}

export async function api(path, { method = 'GET', body, headers = {}, signal, quiet401 = false } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && session.csrf) h['X-CSRF-Token'] = session.csrf;
  let r;
  try {
    r = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), signal, credentials: 'same-origin' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { error: `The console server did not answer (${e.message}). Is herd running?` });
  }
  if (r.status === 204) return null;
  let data = null;
  const text = await r.text();
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text.slice(0, 500) || `HTTP ${r.status}` };
  }
  if (!r.ok) {
    const err = new ApiError(r.status, data);
    err.retryAfter = +r.headers.get('Retry-After') || 0;
    if (r.status === 401 && !quiet401) onUnauthorized();
    throw err;
  }
  return data;
}

export const get = (path, opts) => api(path, opts);
export const post = (path, body, opts = {}) => api(path, { ...opts, method: 'POST', body: body === undefined ? {} : body });
