// The job page: the job's fields, its live stream, result, error, cancel and sharing.
//
// Signed in, the page reads the job with the key and mints event tokens for the stream.
// Opened with `#job=<id>&token=<token>` it has no key: it shows what the stream says and
// offers nothing that needs one (cancel, the vectors, a new token).

import { api, ApiError, jobPath } from './api.js';
import { $, formatTime, h, say, show, statusBadge } from './dom.js';
import { describeStatus, EventFeed, JobState } from './stream.js';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

export class JobPage {
  constructor() {
    this.root = $('view-job');
    this.feed = null;
    this.job = null;
    this.state = null;
    this.generation = 0; // bumps on every open, so answers for a page left behind are dropped
    $('job-cancel').addEventListener('click', () => this.cancel());
    $('job-share').addEventListener('click', () => this.share());
  }

  /** Show job `id`: with the session's key, or read-only with an event `token`. */
  async open({ id, token = null }) {
    this.close();
    const generation = ++this.generation;
    this.id = id;
    this.readOnly = Boolean(token);
    this.job = null;
    this.kind = null;
    this.state = new JobState();
    this.reset();
    document.title = `Job ${id.slice(0, 8)} · aijobs`;
    if (this.readOnly) {
      this.follow(token);
      return;
    }
    try {
      this.job = await api(jobPath(id, '?vectors=false'));
      if (generation !== this.generation) return;
      this.kind = this.job.kind;
      this.renderJob();
      const minted = await api(jobPath(id, '/token'), { method: 'POST' });
      if (generation !== this.generation) return;
      this.follow(minted.token);
    } catch (error) {
      if (generation !== this.generation) return;
      say($('job-problem'), error.status === 404 ? 'No such job for this key.' : error.message);
      this.setConnection('closed');
    }
  }

  /** Leave the page: the stream is closed, nothing reconnects. */
  close() {
    this.generation += 1;
    if (this.feed) this.feed.close();
    this.feed = null;
  }

  reset() {
    $('job-id').textContent = this.id;
    $('job-status').replaceChildren();
    $('job-text').textContent = '';
    $('job-log').replaceChildren();
    $('job-result').replaceChildren();
    $('job-meta').replaceChildren();
    for (const id of ['job-problem', 'job-retry', 'job-text-warning', 'job-note']) say($(id), '');
    for (const id of ['job-meta', 'job-progress-box', 'job-result-box', 'job-error-box',
      'job-cancel', 'job-share', 'job-share-link']) show($(id), false);
    show($('job-output-box'), true);
    const data = this.root.dataset;
    data.lastEventId = '0';
    data.opens = '0';
    data.anomalies = '0';
    data.finished = 'false';
    delete data.textSource;
    delete data.verified;
    this.setConnection('connecting');
  }

  follow(token) {
    const generation = this.generation;
    this.feed = new EventFeed({
      jobId: this.id,
      token,
      onEvent: (id, type, data) => this.onEvent(id, type, data),
      onState: (state) => {
        if (generation === this.generation) this.setConnection(state);
      },
      renew: this.readOnly ? null : (failures) => this.renewToken(failures),
    });
    this.feed.start();
  }

  /** Before a reopen: a fresh token, or the end if the job finished meanwhile. */
  async renewToken(failures) {
    let job;
    try {
      job = await api(jobPath(this.id, '?vectors=false'));
    } catch (error) {
      if (error.status === 401 || error.status === 404) {
        say($('job-problem'), error.message);
        return { stop: 'closed' };
      }
      throw error; // the API is down or busy: the feed tries again later
    }
    // A finished job whose stream still will not open (its events are past our cursor):
    // its row is the whole story.
    if (TERMINAL.has(job.status) && failures > 1) {
      this.job = job;
      this.finishFromRow(job);
      return { stop: 'closed' };
    }
    const minted = await api(jobPath(this.id, '/token'), { method: 'POST' });
    return { token: minted.token };
  }

  setConnection(state) {
    const labels = {
      connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…',
      closed: 'closed', 'gave up': 'stream closed (the token may have expired)',
    };
    const previous = this.root.dataset.streamState;
    const after = this.state ? this.state.lastId : 0;
    // Breaks and resumptions go in the log, so the page tells where the stream picked up.
    if (state === 'reconnecting' && previous === 'live') {
      this.log('·', 'connection', `lost after #${after}: reconnecting`);
    } else if (state === 'live' && previous === 'reconnecting') {
      this.log('·', 'connection', `back: resuming after #${after}`);
    }
    const node = $('job-conn');
    node.textContent = labels[state] || state;
    node.className = `conn conn-${state.replace(' ', '-')}`;
    this.root.dataset.streamState = state;
    if (this.feed) this.root.dataset.opens = String(this.feed.opens);
  }

  onEvent(id, type, data) {
    const state = this.state;
    if (!state.apply(id, type, data)) {
      this.noteAnomaly();
      return;
    }
    if (state.gaps) this.noteAnomaly();
    this.root.dataset.lastEventId = String(id);
    this.root.dataset.opens = String(this.feed ? this.feed.opens : 0);
    const text = $('job-text');
    switch (type) {
      case 'delta':
        text.append(data.text);
        break;
      case 'reset':
        text.textContent = state.text;
        say($('job-text-warning'), '');
        this.log(id, type, data.round
          ? `repair round ${data.round}: the text starts again`
          : `attempt ${data.attempt} starts: the text starts again`);
        break;
      case 'status':
        this.setStatus(data.status);
        this.log(id, type, describeStatus(data));
        say($('job-retry'), data.status === 'retrying' || data.reason ? describeStatus(data) : '');
        break;
      case 'progress':
        this.kind = this.kind || 'embed';
        this.renderProgress(data);
        break;
      case 'result':
        this.renderResult(data);
        this.log(id, type, describeResult(data));
        break;
      case 'error':
        this.renderError(data);
        this.log(id, type, `${data.code}: ${data.message}`);
        break;
      case 'done':
        this.log(id, type, data.status);
        this.finish(data.status);
        break;
      default:
        break;
    }
  }

  noteAnomaly() {
    const { duplicates, gaps } = this.state;
    this.root.dataset.anomalies = String(duplicates + gaps);
    say($('job-text-warning'), `stream anomalies: ${duplicates} repeated, ${gaps} gaps`);
  }

  setStatus(status) {
    $('job-status').replaceChildren(statusBadge(status));
    this.root.dataset.status = status;
    show($('job-cancel'), !this.readOnly && !TERMINAL.has(status));
  }

  log(id, type, text) {
    const label = typeof id === 'number' ? `#${id}` : id;
    $('job-log').append(h('li', { dataset: { event: type } },
      h('span', { class: 'log-id' }, label), h('span', { class: 'log-type' }, type), text));
  }

  renderJob() {
    const job = this.job;
    const usage = job.usage
      ? `${job.usage.prompt_tokens} in, ${job.usage.completion_tokens} out, ${job.usage.total_tokens} total`
      : '—';
    const rows = [
      ['Kind', job.kind], ['Model', job.model], ['Attempts', job.attempts],
      ['Created', formatTime(job.created_at)], ['Started', formatTime(job.started_at)],
      ['Finished', formatTime(job.finished_at)], ['Tokens', usage],
    ];
    if (Object.keys(job.metadata || {}).length) rows.push(['Metadata', JSON.stringify(job.metadata)]);
    if (job.purged) rows.push(['Purged', 'input and output deleted by retention']);
    $('job-meta').replaceChildren(...rows.flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
    show($('job-meta'), true);
    if (!this.state.done) this.setStatus(job.status);
    show($('job-share'), true);
    $('job-output-title').textContent = job.kind === 'extract' ? 'Output (JSON as it streams)' : 'Output';
    show($('job-output-box'), job.kind !== 'embed');
  }

  renderProgress({ done, total }) {
    show($('job-progress-box'), true);
    show($('job-output-box'), false);
    const bar = $('job-progress');
    bar.max = total || 1;
    bar.value = done;
    $('job-progress-text').textContent = `${done} of ${total} texts embedded`;
  }

  renderResult(result) {
    const box = $('job-result');
    const kind = this.kind || kindOfResult(result);
    this.kind = kind;
    if (kind === 'generate') {
      const text = $('job-text');
      // A stream past retention has no deltas, only the stored result: show that instead.
      if (this.state.deltas === 0 && !text.textContent && result.text) {
        text.textContent = result.text;
        this.root.dataset.textSource = 'result';
      } else {
        this.root.dataset.textSource = 'stream';
      }
      const same = text.textContent === result.text;
      this.root.dataset.verified = String(same);
      if (!same) say($('job-text-warning'), 'The streamed text differs from the stored result.');
      box.replaceChildren(h('p', {}, 'Finish reason: ', h('code', {}, result.finish_reason ?? '—')));
    } else if (kind === 'extract') {
      box.replaceChildren(h('pre', { id: 'job-json', class: 'json' }, JSON.stringify(result.data, null, 2)));
    } else if (kind === 'embed') {
      show($('job-output-box'), false);
      const summary = h('p', { id: 'job-vectors' },
        `${result.count} vectors × ${result.dimensions} dimensions`);
      const download = this.readOnly
        ? h('p', { class: 'muted' }, 'Sign in with the tenant\'s key to download the vectors.')
        : h('button', { id: 'job-download', type: 'button', onclick: () => this.download() },
          'Download vectors (JSON)');
      box.replaceChildren(summary, download);
    } else {
      box.replaceChildren(h('pre', { class: 'json' }, JSON.stringify(result, null, 2)));
    }
    show($('job-result-box'), true);
  }

  renderError(error) {
    $('job-error').replaceChildren(h('code', {}, error.code), ` ${error.message}`,
      error.retryable ? ' (retryable)' : '');
    show($('job-error-box'), true);
  }

  async finish(status) {
    this.setStatus(status);
    say($('job-retry'), '');
    this.root.dataset.finished = 'true';
    if (this.readOnly) return;
    const generation = this.generation;
    try {
      const job = await api(jobPath(this.id, '?vectors=false')); // final times and usage
      if (generation !== this.generation) return;
      this.job = job;
      this.renderJob();
    } catch {
      // the page already shows the outcome from the stream
    }
  }

  /** The stream could not tell the end (it expired past our cursor): the row does. */
  finishFromRow(job) {
    if (job.result && !this.state.result) this.renderResult(job.result);
    if (job.error && !this.state.error) this.renderError(job.error);
    this.state.done = job.status;
    this.finish(job.status);
  }

  async cancel() {
    const button = $('job-cancel');
    button.disabled = true;
    try {
      const answer = await api(jobPath(this.id, '/cancel'), { method: 'POST' });
      say($('job-note'), answer.detail);
    } catch (error) {
      say($('job-note'), error.message);
    } finally {
      button.disabled = false;
    }
  }

  async share() {
    try {
      const minted = await api(jobPath(this.id, '/token'), { method: 'POST' });
      const hash = new URLSearchParams({ job: this.id, token: minted.token });
      const link = $('job-share-link');
      link.href = `${location.origin}${location.pathname}#${hash}`;
      link.textContent = 'read-only link';
      link.title = `anyone with it can read this job's events until ${formatTime(minted.expires_at)}`;
      show(link, true);
      say($('job-note'), `valid until ${formatTime(minted.expires_at)}`);
    } catch (error) {
      say($('job-note'), error.message);
    }
  }

  /** The vectors, only when asked: they can be hundreds of MB. */
  async download() {
    const button = $('job-download');
    button.disabled = true;
    say($('job-note'), 'fetching the vectors…');
    try {
      const blob = await api(jobPath(this.id), { as: 'blob' });
      const url = URL.createObjectURL(blob);
      const link = h('a', { href: url, download: `${this.id}-vectors.json` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      say($('job-note'), `downloaded ${Math.ceil(blob.size / 1024)} KiB`);
    } catch (error) {
      say($('job-note'), error instanceof ApiError ? error.message : String(error));
    } finally {
      button.disabled = false;
    }
  }
}

/** Without a key the page learns the kind from the result's shape. */
function kindOfResult(result) {
  if (typeof result.text === 'string') return 'generate';
  if ('data' in result) return 'extract';
  if ('count' in result && 'dimensions' in result) return 'embed';
  return null;
}

/** One line for the log: what the result is (the page shows it whole below). */
function describeResult(result) {
  if (typeof result.text === 'string') return `${result.text.length} characters, finish reason ${result.finish_reason}`;
  if ('data' in result) return 'JSON, valid against the schema';
  if ('count' in result) return `${result.count} vectors of ${result.dimensions} dimensions`;
  return 'result';
}
