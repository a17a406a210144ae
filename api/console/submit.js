// The submit form: one body per kind, the API's `detail` shown on a refusal.

import { api } from './api.js';
import { $, say, show } from './dom.js';

const DEFAULT_MODELS = {
  generate: 'gpt-4o-mini',
  extract: 'gpt-4o-mini',
  embed: 'text-embedding-3-small',
};

const EXAMPLE_SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    total: { type: 'number' },
  },
  required: ['name', 'total'],
};

/** A mistake found before the request is sent. */
class FormError extends Error {}

export class SubmitForm {
  constructor({ onSubmitted }) {
    this.onSubmitted = onSubmitted;
    this.modelEdited = false;
    $('new-schema').value = JSON.stringify(EXAMPLE_SCHEMA, null, 2);
    $('new-kind').addEventListener('change', () => this.showKind());
    $('new-model').addEventListener('input', () => {
      this.modelEdited = true;
    });
    $('new-form').addEventListener('submit', (event) => {
      event.preventDefault(); // never a native submission: the CSP forbids it anyway
      this.submit();
    });
    this.showKind();
  }

  enter() {
    document.title = 'New job · aijobs';
    say($('new-error'), '');
  }

  showKind() {
    const kind = $('new-kind').value;
    for (const fieldset of document.querySelectorAll('#new-form fieldset[data-kind]')) {
      show(fieldset, fieldset.dataset.kind === kind);
    }
    if (!this.modelEdited) $('new-model').value = DEFAULT_MODELS[kind];
  }

  body() {
    const kind = $('new-kind').value;
    const model = $('new-model').value.trim();
    if (!model) throw new FormError('model: required');
    if (kind === 'generate') {
      const prompt = $('new-prompt').value;
      if (!prompt.trim()) throw new FormError('prompt: required');
      const body = { kind, model, messages: [{ role: 'user', content: prompt }] };
      const maxTokens = $('new-max-tokens').value;
      if (maxTokens) body.max_tokens = Number(maxTokens);
      return body;
    }
    if (kind === 'extract') {
      const text = $('new-text').value;
      if (!text.trim()) throw new FormError('text: required');
      let schema;
      try {
        schema = JSON.parse($('new-schema').value);
      } catch (error) {
        throw new FormError(`schema: not valid JSON (${error.message})`);
      }
      return { kind, model, text, schema };
    }
    // One text per line; blank lines are spacing, not texts.
    const input = $('new-texts').value.split(/\r?\n/).filter((line) => line.trim());
    if (!input.length) throw new FormError('texts: give at least one line');
    const body = { kind, model, input };
    const dimensions = $('new-dimensions').value;
    if (dimensions) body.dimensions = Number(dimensions);
    return body;
  }

  async submit() {
    const button = $('new-submit');
    say($('new-error'), '');
    let body;
    try {
      body = this.body();
    } catch (error) {
      say($('new-error'), error.message);
      return;
    }
    button.disabled = true; // one click, one job
    try {
      const job = await api('/v1/jobs', { method: 'POST', body });
      this.onSubmitted(job);
    } catch (error) {
      say($('new-error'), error.status ? `${error.status}: ${error.message}` : error.message);
    } finally {
      button.disabled = false;
    }
  }
}
