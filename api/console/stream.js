// A job's event stream: the protocol's state (JobState) and the connection (EventFeed).
//
// The browser's EventSource does the resuming: after a dropped connection or an API
// restart it reconnects by itself (every `retry: 2000` ms) and sends Last-Event-ID, and the
// server answers with exactly the events after it. EventFeed only steps in when the
// EventSource gives up for good (a non-200 answer: an expired token, a 204 for a finished
// job, a 429), and reopens with `?after=` the last id it handled.

import { jobPath } from './api.js';

export const EVENT_TYPES = ['status', 'delta', 'reset', 'progress', 'result', 'error', 'done'];

/** One line for a `status` event: what the job is doing and, for a retry, the wait. */
export function describeStatus(data) {
  const attempt = data.attempt ? `attempt ${data.attempt}` : '';
  const wait = typeof data.wait_s === 'number' ? ` in ${formatSeconds(data.wait_s)}` : '';
  const reason = data.reason ? ` (${data.reason})` : '';
  switch (data.status) {
    case 'running':
      return `${attempt} running`;
    case 'retrying':
      return `retrying${reason}: ${attempt} next${wait}${data.message ? ` — ${data.message}` : ''}`;
    case 'queued':
      return data.reason ? `waiting${reason}${wait}` : 'queued';
    default:
      return [data.status, attempt].filter(Boolean).join(', ');
  }
}

function formatSeconds(seconds) {
  return seconds < 10 ? `${seconds.toFixed(1)} s` : `${Math.round(seconds)} s`;
}

/** Events a reader may meet right after a jump in ids. */
const RESYNC_EVENTS = new Set(['reset', 'result', 'error', 'done']);

/** The protocol's state: what the events so far say about the job. Knows no DOM. */
export class JobState {
  constructor() {
    this.lastId = 0;
    this.text = '';
    this.deltas = 0;
    this.status = null;
    this.attempt = 0;
    this.progress = null;
    this.result = null;
    this.error = null;
    this.done = null;
    this.duplicates = 0;
    this.gaps = 0;
  }

  /**
   * Apply one event. Returns false for an id already handled: the server promises none,
   * but a client that applied one twice would repeat text, so it is counted, not applied.
   */
  apply(id, type, data) {
    if (id <= this.lastId) {
      this.duplicates += 1;
      return false;
    }
    // Ids rise by one, except where the server resynchronises a reader: a new attempt
    // starts above its predecessor's reserved ids, and after a loss the text comes back
    // in a reset. A jump onto anything else would be a lost event.
    if (id !== this.lastId + 1 && !RESYNC_EVENTS.has(type)) this.gaps += 1;
    this.lastId = id;
    if (typeof data.attempt === 'number') this.attempt = data.attempt;
    switch (type) {
      case 'status':
        this.status = data.status;
        break;
      case 'delta':
        this.text += data.text;
        this.deltas += 1;
        break;
      case 'reset':
        // A new attempt or repair round: its text so far, if the event carries it.
        this.text = typeof data.text === 'string' ? data.text : '';
        break;
      case 'progress':
        this.progress = { done: data.done, total: data.total };
        break;
      case 'result':
        this.result = data;
        break;
      case 'error':
        this.error = data;
        break;
      case 'done':
        this.done = data.status;
        this.status = data.status;
        break;
      default:
        break;
    }
    return true;
  }
}

/**
 * Follows one job's events with an EventSource on its event-token URL.
 *
 * `onEvent(id, type, data)` gets each event in order; `onState(state)` gets
 * 'connecting' | 'live' | 'reconnecting' | 'closed'. `renew(failures)`, when given, is
 * awaited before a reopen: it returns `{token}` (a fresh token) or `{stop: reason}`.
 * Without it the same token is tried again a few times.
 */
export class EventFeed {
  constructor({ jobId, token, after = 0, onEvent, onState, renew = null }) {
    this.jobId = jobId;
    this.token = token;
    this.lastId = after;
    this.onEvent = onEvent;
    this.onState = onState;
    this.renew = renew;
    this.source = null;
    this.timer = null;
    this.closed = false;
    this.failures = 0; // reopens in a row that brought no event
    this.opens = 0; // connections the server accepted, reconnects included
  }

  start() {
    this.open();
  }

  /** Stop for good: no reconnect, by the browser or by us. */
  close(state = 'closed') {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
    this.onState(state);
  }

  get readyState() {
    return this.source ? this.source.readyState : EventSource.CLOSED;
  }

  open() {
    const after = this.lastId ? `&after=${this.lastId}` : '';
    const url = `${jobPath(this.jobId, '/events')}?token=${encodeURIComponent(this.token)}${after}`;
    const source = new EventSource(url);
    this.source = source;
    this.onState(this.opens || this.failures ? 'reconnecting' : 'connecting');
    source.addEventListener('open', () => {
      this.opens += 1;
      this.onState('live');
    });
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (event) => this.handle(source, type, event));
    }
  }

  handle(source, type, event) {
    if (source !== this.source) return;
    // `error` is both the protocol's event (a MessageEvent with data) and EventSource's
    // own signal of a broken connection (a plain Event): tell them apart.
    if (type === 'error' && !(event instanceof MessageEvent)) {
      this.connectionLost(source);
      return;
    }
    const id = Number(event.lastEventId);
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      data = {};
    }
    this.failures = 0;
    this.lastId = Math.max(this.lastId, id);
    this.onEvent(id, type, data);
    // The last event: close now, or the browser would reconnect after `retry` forever.
    if (type === 'done') this.close('closed');
  }

  connectionLost(source) {
    if (this.closed) return;
    if (source.readyState === EventSource.CONNECTING) {
      this.onState('reconnecting'); // the browser retries by itself, with Last-Event-ID
      return;
    }
    // CLOSED: the server answered with something else than a stream. Reopen after a
    // backoff, with a fresh token if we can get one, from the last event handled.
    source.close();
    this.source = null;
    this.failures += 1;
    this.onState('reconnecting');
    const delayMs = Math.min(1000 * 2 ** (this.failures - 1), 15000);
    this.timer = setTimeout(() => this.reopen(), delayMs);
  }

  async reopen() {
    if (this.closed) return;
    if (this.renew) {
      let answer;
      try {
        answer = await this.renew(this.failures);
      } catch {
        answer = {}; // the API is not answering yet: try the old token, then again
      }
      if (this.closed) return;
      if (answer.stop) {
        this.close(answer.stop);
        return;
      }
      if (answer.token) this.token = answer.token;
    } else if (this.failures > 5) {
      this.close('gave up');
      return;
    }
    this.open();
  }
}
