// The API from the console: same origin, the key from this tab's sessionStorage only.

const KEY_ITEM = 'aijobs.api_key';

/** The signed-in key. sessionStorage, not localStorage: it dies with the tab. */
export const session = {
  key: () => sessionStorage.getItem(KEY_ITEM),
  signIn: (key) => sessionStorage.setItem(KEY_ITEM, key),
  signOut: () => sessionStorage.removeItem(KEY_ITEM),
};

/** An answer that was not 2xx (status 0: the API could not be reached). */
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** The API's `detail` as one line: a string as it is, anything else as JSON. */
function describe(detail, fallback) {
  if (typeof detail === 'string' && detail) return detail;
  if (detail !== undefined && detail !== null) return JSON.stringify(detail);
  return fallback;
}

/**
 * Call the API and return the parsed JSON (or a Blob with `as: 'blob'`).
 * A 401 on the session's key fires `aijobs:unauthorized` (the key was revoked).
 */
export async function api(path, { method = 'GET', body, key = session.key(), as = 'json' } = {}) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch {
    throw new ApiError(0, 'the API could not be reached');
  }
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      detail = describe((await response.json()).detail, detail);
    } catch {
      // not JSON: keep the status line
    }
    if (response.status === 401 && key && key === session.key()) {
      window.dispatchEvent(new CustomEvent('aijobs:unauthorized'));
    }
    throw new ApiError(response.status, detail);
  }
  if (as === 'blob') return response.blob();
  return response.status === 204 ? null : response.json();
}

/** The path of a job, its id escaped. */
export const jobPath = (id, tail = '') => `/v1/jobs/${encodeURIComponent(id)}${tail}`;
