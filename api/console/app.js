// The console's entry point: sign in, and a router over the URL's fragment.
//
//   #jobs (or nothing)           the tenant's jobs          (needs the key)
//   #new                         the submit form            (needs the key)
//   #job=<id>                    one job, live              (needs the key)
//   #job=<id>&token=<token>      one job, read-only, with an event token and no key
//
// The fragment never reaches a server, and it never holds the key.

import { api, session } from './api.js';
import { $, say, show } from './dom.js';
import { JobPage } from './job.js';
import { JobsList } from './jobs.js';
import { SubmitForm } from './submit.js';

const VIEWS = ['signin', 'jobs', 'new', 'job'];

const jobs = new JobsList();
const jobPage = new JobPage();
const form = new SubmitForm({
  onSubmitted: (job) => {
    location.hash = `#job=${encodeURIComponent(job.id)}`;
  },
});

function showView(name) {
  for (const view of VIEWS) show($(`view-${view}`), view === name);
  for (const link of document.querySelectorAll('#nav [data-nav]')) {
    link.classList.toggle('active', link.dataset.nav === name);
  }
  document.body.dataset.view = name;
}

function route() {
  jobs.leave();
  jobPage.close();
  const params = new URLSearchParams(location.hash.slice(1));
  const jobId = params.get('job');
  const token = params.get('token');
  const readOnly = Boolean(jobId && token);
  show($('read-only-badge'), readOnly);
  if (readOnly) {
    show($('nav'), false);
    showView('job');
    jobPage.open({ id: jobId, token });
    return;
  }
  if (!session.key()) {
    show($('nav'), false);
    showView('signin');
    document.title = 'Sign in · aijobs';
    $('signin-key').focus();
    return;
  }
  show($('nav'), true);
  if (jobId) {
    showView('job');
    jobPage.open({ id: jobId });
  } else if (params.has('new')) {
    showView('new');
    form.enter();
  } else {
    showView('jobs');
    jobs.enter();
  }
}

function signOut(message = '') {
  session.signOut();
  say($('signin-error'), message);
  route();
}

$('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = $('signin-key');
  const key = input.value.trim();
  if (!key) return;
  say($('signin-error'), '');
  try {
    await api('/v1/jobs?limit=1', { key }); // the key is tried before it is kept
  } catch (error) {
    say($('signin-error'), error.status === 401 ? 'The API refused this key.' : error.message);
    return;
  }
  input.value = '';
  session.signIn(key);
  route();
});

$('sign-out').addEventListener('click', () => signOut());
window.addEventListener('aijobs:unauthorized', () => signOut('The API refused the key: sign in again.'));
window.addEventListener('hashchange', route);
route();
