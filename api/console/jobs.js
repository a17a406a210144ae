// The jobs list: filters, paging by cursor, and a poll every 2 s while the tab is visible.

import { api } from './api.js';
import { $, formatTime, h, say, show, statusBadge } from './dom.js';

const POLL_MS = 2000;

export class JobsList {
  constructor() {
    this.active = false;
    this.timer = null;
    this.sequence = 0; // answers to an older request (filters changed since) are dropped
    this.cursors = [null]; // the cursor of every page up to this one: "previous" pops
    this.nextCursor = null;
    for (const id of ['filter-status', 'filter-kind', 'page-size']) {
      $(id).addEventListener('change', () => this.firstPage());
    }
    $('page-next').addEventListener('click', () => {
      if (!this.nextCursor) return;
      this.cursors.push(this.nextCursor);
      this.refresh();
    });
    $('page-prev').addEventListener('click', () => {
      if (this.cursors.length < 2) return;
      this.cursors.pop();
      this.refresh();
    });
    // A hidden tab polls nobody: the timer stops and the list refreshes when it is seen.
    document.addEventListener('visibilitychange', () => {
      if (!this.active) return;
      if (document.visibilityState === 'visible') this.refresh();
      else clearTimeout(this.timer);
    });
  }

  enter() {
    this.active = true;
    document.title = 'Jobs · aijobs';
    this.refresh();
  }

  leave() {
    this.active = false;
    this.sequence += 1;
    clearTimeout(this.timer);
  }

  firstPage() {
    this.cursors = [null];
    this.refresh();
  }

  query() {
    const params = new URLSearchParams({ limit: $('page-size').value });
    if ($('filter-status').value) params.set('status', $('filter-status').value);
    if ($('filter-kind').value) params.set('kind', $('filter-kind').value);
    const cursor = this.cursors.at(-1);
    if (cursor) params.set('cursor', cursor);
    return params;
  }

  async refresh() {
    clearTimeout(this.timer);
    if (!this.active) return;
    const sequence = ++this.sequence;
    try {
      const page = await api(`/v1/jobs?${this.query()}`);
      if (sequence !== this.sequence) return;
      this.render(page);
      say($('jobs-error'), '');
    } catch (error) {
      if (sequence !== this.sequence) return;
      say($('jobs-error'), `Could not load the jobs: ${error.message}`);
    }
    // One request at a time: the next poll is timed from this answer, not from a clock.
    if (this.active && document.visibilityState === 'visible') {
      this.timer = setTimeout(() => this.refresh(), POLL_MS);
    }
  }

  render(page) {
    this.nextCursor = page.next_cursor;
    $('jobs-body').replaceChildren(...page.data.map(row));
    show($('jobs-empty'), page.data.length === 0);
    $('page-prev').disabled = this.cursors.length < 2;
    $('page-next').disabled = !page.next_cursor;
    $('page-number').textContent = `page ${this.cursors.length}`;
    $('jobs-updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
  }
}

function row(job) {
  const usage = job.usage;
  return h('tr', { dataset: { jobId: job.id, status: job.status } },
    h('td', {}, h('a', { href: `#job=${encodeURIComponent(job.id)}`, class: 'mono', title: job.id },
      job.id.slice(0, 12))),
    h('td', {}, statusBadge(job.status)),
    h('td', {}, job.kind),
    h('td', {}, job.model),
    h('td', { title: job.created_at }, formatTime(job.created_at)),
    h('td', { title: job.started_at || '' }, formatTime(job.started_at)),
    h('td', { title: job.finished_at || '' }, formatTime(job.finished_at)),
    h('td', { class: 'num' }, job.attempts),
    h('td', {
      class: 'num',
      title: usage ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion` : '',
    }, usage ? usage.total_tokens : '—'));
}
