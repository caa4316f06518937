// The console's only script. Its one back end is the admin API at /api/graphql, called with
// the credentials typed at login (kept in this page's memory only, sent as a Basic
// Authorization header with `credentials: 'omit'`, so the browser neither caches them nor
// shows its own login prompt). Everything the API says is put into the page as text, never as
// markup.
'use strict';
(function () {
  const API = '/api/graphql';
  const PAGE_SIZE = 10;
  const POLL_ACTIVE_MS = 1000;
  const POLL_IDLE_MS = 10000;
  const ACTIVE = ['RUNNING', 'SCHEDULED', 'PAUSED'];
  const ENDED = ['FINISHED', 'ABORT_ERROR', 'ABORT_ADMIN'];

  const JOB_FIELDS = `fragment ConsoleJob on Broadcast {
    id name domain messageSubject messageBody senderJid messageRate ownerNode
    createTimestamp startTimestamp stopTimestamp executionState abortionReason
    recipientCount recipientsProcessed waitingReason kind amends status startAt pausedAt
    recipientGroup group unknownRecipientCount unknownRecipients recipientsCounted }`;
  const Q_DOMAINS = 'query ConsoleDomains { broadcast { getBroadcastDomains } }';
  const Q_JOBS = `query ConsoleJobs($domain: DomainName!, $limit: PosInt, $index: NonNegInt) {
    broadcast { getBroadcasts(domain: $domain, limit: $limit, index: $index) { ...ConsoleJob } } }
    ${JOB_FIELDS}`;
  const Q_JOB = `query ConsoleJob($domain: DomainName!, $id: Int!) {
    broadcast { getBroadcast(domain: $domain, id: $id) { ...ConsoleJob } } } ${JOB_FIELDS}`;
  const Q_COUNT = `query ConsoleCount($domain: DomainName!, $amends: Int,
    $recipientGroup: BroadcastRecipientGroup, $recipients: [BareJID!], $group: String) {
    broadcast { countBroadcastRecipients(domain: $domain, sample: 5, amends: $amends,
      recipientGroup: $recipientGroup, recipients: $recipients, group: $group) {
      recipientCount sample unknownRecipientCount unknownRecipients } } }`;
  const Q_GROUPS = `query ConsoleGroups($domain: DomainName!) {
    broadcast { getBroadcastGroups(domain: $domain) } }`;
  const M_START = `mutation ConsoleStart($name: String!, $domain: DomainName!,
    $subject: String!, $body: String!, $sender: BareJID!, $rate: PosInt!, $key: String,
    $startAt: DateTime, $recipientGroup: BroadcastRecipientGroup!, $recipients: [BareJID!],
    $group: String) {
    broadcast { startBroadcast(name: $name, domain: $domain, messageSubject: $subject,
      messageBody: $body, senderJid: $sender, messageRate: $rate,
      recipientGroup: $recipientGroup, recipients: $recipients, group: $group,
      idempotencyKey: $key, startAt: $startAt) {
      message ids } } }`;
  const M_PAUSE = `mutation ConsolePause($domain: DomainName!, $id: Int!) {
    broadcast { pauseBroadcast(domain: $domain, id: $id) { message ids } } }`;
  const M_RESUME = `mutation ConsoleResume($domain: DomainName!, $id: Int!) {
    broadcast { resumeBroadcast(domain: $domain, id: $id) { message ids } } }`;
  const M_ABORT = `mutation ConsoleAbort($domain: DomainName!, $id: Int!) {
    broadcast { abortBroadcast(domain: $domain, id: $id) { message ids } } }`;
  const M_DELETE = `mutation ConsoleDelete($domain: DomainName!, $ids: [Int!]!) {
    broadcast { deleteInactiveBroadcastsByIds(domain: $domain, ids: $ids) { message ids } } }`;
  const M_CORRECT = `mutation ConsoleCorrect($domain: DomainName!, $id: Int!,
    $subject: String!, $body: String!, $rate: PosInt!, $key: String) {
    broadcast { correctBroadcast(domain: $domain, id: $id, messageSubject: $subject,
      messageBody: $body, messageRate: $rate, idempotencyKey: $key) { message ids } } }`;
  const M_RETRACT = `mutation ConsoleRetract($domain: DomainName!, $id: Int!, $rate: PosInt!,
    $key: String) {
    broadcast { retractBroadcast(domain: $domain, id: $id, messageRate: $rate,
      idempotencyKey: $key) { message ids } } }`;

  const $ = (id) => document.getElementById(id);
  const state = {
    auth: null, user: '', domain: '', index: 0, jobs: [], timer: 0, generation: 0,
    followed: null, key: null, states: new Map(), rendered: '',
  };

  // ---- talking to the API ------------------------------------------------------------------

  /** An answer of the API that carries errors: `errors` as the API gave them. */
  class ApiErrors extends Error {
    constructor(status, errors) {
      super(errors.map((e) => e.message).join('; '));
      this.status = status;
      this.errors = errors;
    }
  }

  function basic(user, password) {
    const bytes = new TextEncoder().encode(user + ':' + password);
    let binary = '';
    bytes.forEach((b) => { binary += String.fromCharCode(b); });
    return 'Basic ' + btoa(binary);
  }

  /** Runs one operation; returns `data.broadcast`, or throws ApiErrors. */
  async function call(query, variables, auth) {
    let response;
    try {
      response = await fetch(API, {
        method: 'POST',
        credentials: 'omit',
        cache: 'no-store',
        headers: { 'content-type': 'application/json', authorization: auth || state.auth },
        body: JSON.stringify({ query: query, variables: variables || {} }),
      });
    } catch (err) {
      throw new ApiErrors(0, [{ message: 'The admin API cannot be reached (' + err.message + ')',
        extensions: { code: 'unreachable' } }]);
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!body || typeof body !== 'object') {
      throw new ApiErrors(response.status, [{ message: 'The admin API answered HTTP ' +
        response.status + ' without JSON', extensions: { code: 'http_' + response.status } }]);
    }
    if (body.errors && body.errors.length) {
      if (response.status === 401 && auth === undefined) { expired(body.errors); }
      throw new ApiErrors(response.status, body.errors);
    }
    return body.data ? body.data.broadcast : null;
  }

  /** A random idempotency key: a retried or doubled click makes one job. */
  function newKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return 'console-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // ---- errors in words ---------------------------------------------------------------------

  function limits(id) {
    const el = $(id);
    return { min: Number(el.dataset.min), max: Number(el.dataset.max) };
  }

  /** What an error means for the person at the form, by code and argument. */
  function explain(error) {
    const ext = error.extensions || {};
    const code = ext.code || '';
    const arg = ext.argument || '';
    const name = limits('f-name'), subject = limits('f-subject'), body = limits('f-body');
    const rate = { min: Number($('f-rate').dataset.min), max: Number($('f-rate').dataset.max) };
    const words = {
      'bad_parameter name': `The name must have ${name.min} to ${name.max} characters.`,
      'bad_parameter messageSubject': `The subject may have at most ${subject.max} characters, and no control characters.`,
      'bad_parameter messageBody': `The message must have ${body.min} to ${body.max} characters, and no control characters.`,
      'bad_parameter messageRate': `The rate must be ${rate.min} to ${rate.max} messages per second.`,
      'input_coercion messageRate': `The rate must be a whole number from ${rate.min} to ${rate.max}.`,
      'input_coercion senderJid': 'The sender must be an address such as admin@' + (state.domain || 'example.com') + '.',
      'sender_not_found senderJid': 'The sender must be an existing account of ' + (state.domain || 'the domain') + '.',
      'idempotency_key_reused idempotencyKey': 'This request was already sent with other values; check the jobs list.',
      'running_job_limit_exceeded': 'A job is already running on this domain: wait until it ends, or abort it.',
      'temporarily_unavailable': 'The service cannot do this just now; try again in a moment.',
      'cannot_count_recipients': 'The users database cannot be read just now; try again in a moment.',
      'database_error': 'The job database failed; try again in a moment.',
      'domain_not_found': 'This domain is not served here.',
      'broadcast_not_found': 'The job no longer exists.',
      'not_running': 'The job is not sending (it is scheduled, paused or has ended).',
      'not_paused': 'The job is not paused.',
      'group_not_found group': 'The domain has no such group.',
      'bad_parameter recipients': 'Every line must be an address of this domain; at most 100,000.',
      'input_coercion recipients': 'Every line must be an address such as alice@' + (state.domain || 'example.com') + '.',
      'no_recipients': 'Nobody would receive it: the domain, the list or the group has no account to send to.',
      'bad_parameter startAt': 'The start time must be in the future (a time up to a minute past starts at once), at most 366 days ahead.',
      'input_coercion startAt': 'The start time must be a date and time.',
      'broadcast_still_running': 'The broadcast is still running: wait until it ends, or abort it first.',
      'not_amendable': 'A retraction cannot be corrected or retracted.',
      'wrong_credentials': 'Wrong user name or password.',
      'no_permissions': 'This account may not act on this domain.',
      'too_many_login_failures': 'Too many failed logins: wait a little and try again.',
      'login_busy': 'The server is busy checking logins: try again in a moment.',
    };
    const said = words[code + ' ' + arg] || words[code] || '';
    const detail = error.message + (code ? ' (' + code + ')' : '');
    return said ? said + ' ' + detail : detail;
  }

  function clearErrors(scope) {
    scope.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
    scope.querySelectorAll('.error').forEach((el) => { el.textContent = ''; });
  }

  /** Shows each error at the field of the argument it concerns, else in `general`; focuses
   * the first field in error. */
  function showErrors(scope, errors, general) {
    let first = null;
    const rest = [];
    errors.forEach((error) => {
      const arg = error.extensions && error.extensions.argument;
      const field = arg && scope.querySelector('[data-argument="' + arg + '"]:not([hidden])');
      if (field && field.offsetParent !== null) {
        const holder = $(field.id + '-error');
        holder.textContent = explain(error);
        field.setAttribute('aria-invalid', 'true');
        if (!first) { first = field; }
      } else {
        rest.push(explain(error));
      }
    });
    general.textContent = rest.join(' ');
    if (first) { first.focus(); }
    return first;
  }

  // ---- character counters ------------------------------------------------------------------

  const segmenter = typeof Intl === 'object' && Intl.Segmenter
    ? new Intl.Segmenter(undefined, { granularity: 'grapheme' }) : null;

  /** Characters as the API counts them: grapheme clusters. */
  function characters(text) {
    if (!segmenter) { return Array.from(text).length; }
    let count = 0;
    for (const _ of segmenter.segment(text)) { count += 1; }
    return count;
  }

  function updateCounter(field) {
    const out = $(field.id + '-count');
    if (!out) { return; }
    const { min, max } = limits(field.id);
    const n = characters(field.value);
    const codePoints = Array.from(field.value).length;
    let text = n + ' / ' + max + ' characters';
    let over = false;
    if (n > max) { text += ' — ' + (n - max) + ' too many'; over = true; }
    else if (n < min) { text += ' — required'; }
    else if (codePoints > 4 * max) { text += ' — too many combining marks'; over = true; }
    out.textContent = text;
    out.classList.toggle('over', over);
  }

  // ---- formatting --------------------------------------------------------------------------

  function when(timestamp) {
    if (!timestamp) { return '—'; }
    const date = new Date(timestamp);
    return isNaN(date) ? timestamp : date.toLocaleString();
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) { return seconds + ' s'; }
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) { return minutes + ' min'; }
    return Math.floor(minutes / 60) + ' h ' + (minutes % 60) + ' min';
  }

  /** Percent done, the measured rate and what is left, for a job. */
  function progress(job) {
    const total = job.recipientCount;
    const done = job.recipientsProcessed;
    if (job.recipientsCounted === false) {
      // A large domain answers before its recipients are counted: a few seconds.
      return { percent: 0, text: done + (job.executionState === 'RUNNING'
        ? ' recipients so far, still counting them'
        : ' recipients; not counted, the job ended first') };
    }
    const percent = total > 0 ? Math.floor((done * 100) / total) : 100;
    let text = done + ' of ' + total + ' recipients (' + percent + ' %)';
    if (stateOf(job) === 'RUNNING') {
      // Progress is committed batch by batch: the rate is measured since the start, and
      // until the first batch is committed the job's own rate stands in for it.
      const started = job.startTimestamp ? Date.parse(job.startTimestamp) : NaN;
      const elapsed = Math.max(1, (Date.now() - started) / 1000);
      const rate = done > 0 && !isNaN(started) ? done / elapsed : 0;
      text += rate > 0
        ? ', ' + (rate < 10 ? rate.toFixed(1) : Math.round(rate)) + ' msg/s'
        : ', sending at up to ' + job.messageRate + ' msg/s';
      text += ', about ' + duration((total - done) / (rate > 0 ? rate : job.messageRate)) + ' left';
    } else if (stateOf(job) === 'SCHEDULED') {
      text += ', starts ' + when(job.startAt);
    }
    return { percent: percent, text: text };
  }

  const STATE_WORDS = {
    RUNNING: 'running', FINISHED: 'finished', ABORT_ERROR: 'stopped by an error',
    ABORT_ADMIN: 'aborted', SCHEDULED: 'scheduled', PAUSED: 'paused',
  };

  function stateOf(job) { return job.status || job.executionState; }

  // ---- the jobs list -----------------------------------------------------------------------

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === 'class') { node.className = v; } else { node.setAttribute(k, v); }
    });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function jobCard(job) {
    const st = stateOf(job);
    const card = el('li', { class: 'job', 'data-job-id': String(job.id), 'data-state': st });
    const title = el('h3', {});
    title.append(el('span', {}, '#' + job.id + ' ' + job.name),
      el('span', { class: 'state ' + st }, STATE_WORDS[st] || st));
    card.append(title);
    if (job.recipientCount > 0) {
      const p = progress(job);
      // Without a value while the recipients are counted: an indeterminate bar.
      const bar = el('progress', job.recipientsCounted === false
        ? { 'aria-label': 'Progress of job ' + job.id }
        : { max: String(job.recipientCount), value: String(job.recipientsProcessed),
          'aria-label': 'Progress of job ' + job.id });
      card.append(bar, el('p', { class: 'progress' }, p.text));
    }
    const facts = el('dl', {});
    const fact = (label, value) => { facts.append(el('dt', {}, label), el('dd', {}, value)); };
    if (job.kind && job.kind !== 'BROADCAST') {
      fact('Kind', job.kind.toLowerCase() + ' of #' + job.amends);
    }
    fact('Recipients', audienceText(job));
    fact('Owner node', job.ownerNode);
    fact('Sender', job.senderJid);
    fact('Rate', job.messageRate + ' msg/s');
    fact('Created', when(job.createTimestamp));
    if (job.startAt) { fact('Scheduled for', when(job.startAt)); }
    fact('Started', when(job.startTimestamp));
    if (job.pausedAt) { fact('Paused', when(job.pausedAt)); }
    fact('Stopped', when(job.stopTimestamp));
    if (job.abortionReason) { fact('Reason', job.abortionReason); }
    if (job.waitingReason) { fact('Waiting', job.waitingReason); }
    card.append(facts);
    const message = el('details', {});
    message.append(el('summary', {}, 'Message'));
    if (job.messageSubject) { message.append(el('p', {}, 'Subject: ' + job.messageSubject)); }
    message.append(el('p', { class: 'body' }, job.messageBody));
    card.append(message);
    const actions = el('p', { class: 'actions' });
    const action = (name, label, cls) => {
      const b = el('button', { type: 'button', 'data-action': name, 'data-id': String(job.id),
        'aria-label': label + ' job ' + job.id, class: cls || 'secondary' }, label);
      actions.append(b);
    };
    if (st === 'RUNNING') { action('pause', 'Pause'); }
    if (st === 'PAUSED') { action('resume', 'Resume'); }
    if (ACTIVE.includes(st)) { action('abort', 'Abort', 'danger'); }
    if (ENDED.includes(st)) {
      if (job.kind !== 'RETRACTION') {
        action('correct', 'Correct');
        action('retract', 'Retract');
      }
      action('delete', 'Delete');
    }
    if (actions.childElementCount) { card.append(actions); }
    return card;
  }

  function renderJobs(jobs, more) {
    const list = $('jobs');
    const focused = document.activeElement;
    const refocus = focused && list.contains(focused) && focused.dataset.action
      ? '[data-action="' + focused.dataset.action + '"][data-id="' + focused.dataset.id + '"]' : null;
    list.replaceChildren(...jobs.map(jobCard));
    $('jobs-empty').hidden = jobs.length > 0 || state.index > 0;
    $('newer').disabled = state.index === 0;
    $('older').disabled = !more;
    $('page').textContent = jobs.length
      ? 'Jobs ' + (state.index + 1) + '–' + (state.index + jobs.length) : '';
    if (refocus) {
      const again = list.querySelector(refocus);
      (again || $('jobs-title')).focus();
    }
  }

  /** Announces state changes of the listed jobs in the live region. */
  function announce(jobs) {
    const said = [];
    jobs.forEach((job) => {
      const before = state.states.get(job.id);
      const now = stateOf(job);
      if (before && before !== now) { said.push('Job ' + job.id + ' ' + (STATE_WORDS[now] || now) + '.'); }
      state.states.set(job.id, now);
    });
    if (said.length) { $('live').textContent = said.join(' '); }
  }

  function renderFollowed(job) {
    const box = $('followed');
    if (!job) { box.hidden = true; return; }
    box.hidden = false;
    box.dataset.jobId = String(job.id);
    box.dataset.state = stateOf(job);
    $('followed-title').textContent = 'Job #' + job.id + ' ' + job.name + ': ' + (STATE_WORDS[stateOf(job)] || stateOf(job));
    const bar = $('followed-bar');
    if (job.recipientsCounted === false) {
      bar.removeAttribute('value');
    } else {
      bar.max = Math.max(1, job.recipientCount);
      bar.value = job.recipientsProcessed;
    }
    const said = STATE_WORDS[stateOf(job)] || stateOf(job);
    const text = progress(job).text + '. ' + said.charAt(0).toUpperCase() + said.slice(1) + '.';
    if ($('followed-status').textContent !== text) { $('followed-status').textContent = text; }
  }

  /** Reads the current page (and the followed job), then schedules the next poll. Only the
   * latest call renders and schedules: an earlier one still under way is dropped, so there is
   * one poll at a time and an older answer never overwrites a newer one. */
  async function refresh() {
    clearTimeout(state.timer);
    state.generation += 1;
    const generation = state.generation;
    const current = () => generation === state.generation && state.auth;
    if (!state.auth || !state.domain) { return; }
    let active = false;
    try {
      const answer = await call(Q_JOBS, { domain: state.domain, limit: PAGE_SIZE + 1, index: state.index });
      if (!current()) { return; }
      const jobs = answer.getBroadcasts || [];
      const page = jobs.slice(0, PAGE_SIZE);
      const more = jobs.length > PAGE_SIZE;
      state.jobs = page;
      announce(page);
      // Rendered again only when something changed, so that the focus and a screen reader's
      // place stay put between polls.
      const signature = JSON.stringify([state.index, more, page]);
      if (signature !== state.rendered) {
        renderJobs(page, more);
        state.rendered = signature;
      }
      $('jobs-error').textContent = '';
      active = page.some((job) => ACTIVE.includes(stateOf(job)));
      if (state.followed !== null) {
        const listed = page.find((job) => job.id === state.followed);
        const job = listed || (await call(Q_JOB, { domain: state.domain, id: state.followed })).getBroadcast;
        if (!current()) { return; }
        renderFollowed(job);
        active = active || ACTIVE.includes(stateOf(job));
      }
    } catch (err) {
      if (!current()) { return; }
      $('jobs-error').textContent = err.errors ? err.errors.map(explain).join(' ') : String(err);
    }
    state.timer = setTimeout(refresh, active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  }

  function follow(id) {
    state.followed = id;
    refresh().then(() => $('followed-title').focus());
  }

  // ---- log in and out ----------------------------------------------------------------------

  async function login(event) {
    event.preventDefault();
    const form = $('login');
    clearErrors(form);
    const user = $('username').value;
    const auth = basic(user, $('password').value);
    $('login-submit').disabled = true;
    try {
      const answer = await call(Q_DOMAINS, {}, auth);
      const domains = answer.getBroadcastDomains || [];
      state.auth = auth;
      state.user = user;
      $('password').value = '';
      const picker = $('domain');
      picker.replaceChildren(...domains.map((d) => el('option', { value: d }, d)));
      picker.disabled = domains.length < 2;
      $('who').textContent = user;
      $('session').hidden = false;
      $('login-view').hidden = true;
      $('app-view').hidden = false;
      selectDomain(domains[0] || '');
      $('send-title').focus();
    } catch (err) {
      const field = err.status === 401 ? $('password') : null;
      if (field) { field.setAttribute('aria-invalid', 'true'); }
      $('login-error').textContent = err.errors.map(explain).join(' ');
      (field || $('username')).focus();
    } finally {
      $('login-submit').disabled = false;
    }
  }

  function logout(message) {
    state.generation += 1;
    clearTimeout(state.timer);
    Object.assign(state, { auth: null, user: '', domain: '', index: 0, jobs: [], followed: null, key: null, rendered: '' });
    state.states.clear();
    ['send', 'login'].forEach((id) => { $(id).reset(); clearErrors($(id)); });
    editStep();
    $('jobs').replaceChildren();
    $('followed').hidden = true;
    $('domain').replaceChildren();
    $('session').hidden = true;
    $('app-view').hidden = true;
    $('login-view').hidden = false;
    $('login-error').textContent = typeof message === 'string' ? message : '';
    $('username').focus();
  }

  function expired(errors) {
    if (state.auth) { logout('Logged out: ' + errors.map(explain).join(' ')); }
  }

  function selectDomain(domain) {
    state.generation += 1;
    state.domain = domain;
    state.index = 0;
    state.followed = null;
    state.rendered = '';
    state.states.clear();
    $('followed').hidden = true;
    $('domain').value = domain;
    $('f-sender').placeholder = 'admin@' + domain;
    editStep();
    clearErrors($('send'));
    loadGroups(domain);
    refresh();
  }

  /** Who a job is for, in words. */
  function audienceText(job) {
    if (job.recipientGroup === 'GROUP') { return 'group ' + job.group; }
    if (job.recipientGroup !== 'LISTED') { return 'every user of the domain'; }
    const unknown = job.unknownRecipientCount || 0;
    return 'listed accounts' + (unknown ? ' (' + unknown + (unknown === 1 ? ' listed address was' :
      ' listed addresses were') + ' not an account: ' + (job.unknownRecipients || []).join(', ') +
      (unknown > (job.unknownRecipients || []).length ? ', …' : '') + ')' : '');
  }

  // ---- sending -----------------------------------------------------------------------------

  const SEND_FIELDS = ['f-name', 'f-subject', 'f-body', 'f-sender', 'f-rate', 'f-start-at',
    'f-recipients'];
  const AUDIENCE_CHOICES = ['f-audience-all', 'f-audience-listed', 'f-audience-group'];

  /** The recipient group chosen. */
  function audienceChoice() {
    const checked = AUDIENCE_CHOICES.map($).find((radio) => radio.checked);
    return checked ? checked.value : 'ALL_USERS_IN_DOMAIN';
  }

  /** The audience variables of startBroadcast and countBroadcastRecipients. */
  function audienceVariables() {
    const group = audienceChoice();
    const list = $('f-recipients').value.split('\n').map((line) => line.trim())
      .filter((line) => line && !line.startsWith('#'));
    return {
      recipientGroup: group,
      recipients: group === 'LISTED' ? list : null,
      group: group === 'GROUP' ? $('f-group').value : null,
    };
  }

  /** Shows the list or the group picker as the choice needs. */
  function showAudience() {
    const group = audienceChoice();
    ['f-recipients', 'f-recipients-label'].forEach((id) => { $(id).hidden = group !== 'LISTED'; });
    ['f-group', 'f-group-label'].forEach((id) => { $(id).hidden = group !== 'GROUP'; });
  }

  /** Fills the group picker with the domain's configured groups (none: the choice is off). */
  async function loadGroups(domain) {
    let groups = [];
    try {
      groups = (await call(Q_GROUPS, { domain })).getBroadcastGroups || [];
    } catch (err) {
      groups = [];
    }
    if (state.domain !== domain) { return; }
    $('f-group').replaceChildren(...groups.map((name) => el('option', { value: name }, name)));
    $('f-audience-group').disabled = groups.length === 0;
    $('f-group-hint').textContent = groups.length ? '' : '(none configured)';
    if (!groups.length && audienceChoice() === 'GROUP') { $('f-audience-all').checked = true; }
    showAudience();
  }

  /** The start time typed (local time) as the API's DateTime; null for at once. */
  function startAtValue(text) {
    if (!text) { return null; }
    const at = new Date(text);
    return isNaN(at) ? text : at.toISOString();
  }

  /** A number typed as one, else the text as typed (the API says what is wrong with it). */
  function rateValue(text) {
    const trimmed = text.trim();
    return /^-?\d+$/.test(trimmed) ? Number(trimmed) : trimmed;
  }

  function editStep() {
    SEND_FIELDS.forEach((id) => { $(id).readOnly = false; });
    AUDIENCE_CHOICES.forEach((id) => { $(id).disabled = id === 'f-audience-group' && !$('f-group').options.length; });
    $('f-group').disabled = false;
    $('dry-run').hidden = true;
    $('check').hidden = false;
    $('confirm').hidden = true;
    $('edit').hidden = true;
    state.key = null;
  }

  async function dryRun(event) {
    event.preventDefault();
    const form = $('send');
    clearErrors(form);
    $('check').disabled = true;
    try {
      const audience = audienceVariables();
      const answer = await call(Q_COUNT, { domain: state.domain, ...audience });
      const preview = answer.countBroadcastRecipients;
      const n = preview.recipientCount;
      if (n === 0) {
        throw new ApiErrors(200, [{ message: 'Nobody would receive it.',
          extensions: { code: 'no_recipients' } }]);
      }
      const later = startAtValue($('f-start-at').value);
      const unknown = preview.unknownRecipientCount || 0;
      const fixed = audience.recipientGroup === 'LISTED' ? 'with the accounts listed now'
        : audience.recipientGroup === 'GROUP' ? 'with the members the group has then'
          : 'with the users there are then';
      $('dry-run-text').textContent = n + (n === 1 ? ' user' : ' users') + ' of ' + state.domain +
        ' would receive this message now' +
        (later ? ' (it starts ' + when(later) + ', ' + fixed + ')' : '') +
        (unknown ? '; ' + unknown + (unknown === 1 ? ' listed address is' : ' listed addresses are') +
          ' not an account and would be skipped: ' + preview.unknownRecipients.join(', ') +
          (unknown > preview.unknownRecipients.length ? ', …' : '') : '') +
        (preview.sample.length ? (unknown ? '; the recipients include:' : ', among them:') : '.');
      $('dry-run-sample').replaceChildren(...preview.sample.map((jid) => el('li', {}, jid)));
      SEND_FIELDS.forEach((id) => { $(id).readOnly = true; });
      AUDIENCE_CHOICES.forEach((id) => { $(id).disabled = true; });
      $('f-group').disabled = true;
      $('dry-run').hidden = false;
      $('check').hidden = true;
      $('confirm').hidden = false;
      $('confirm').textContent = (later ? 'Schedule for ' : 'Send to ') + n + (n === 1 ? ' user' : ' users');
      $('edit').hidden = false;
      state.key = newKey();
      $('dry-run').focus();
    } catch (err) {
      showErrors(form, err.errors, $('send-error'));
    } finally {
      $('check').disabled = false;
    }
  }

  async function send() {
    const form = $('send');
    clearErrors(form);
    $('confirm').disabled = true;
    const variables = {
      name: $('f-name').value,
      domain: state.domain,
      subject: $('f-subject').value,
      body: $('f-body').value,
      sender: $('f-sender').value.trim(),
      rate: rateValue($('f-rate').value),
      key: state.key,
      startAt: startAtValue($('f-start-at').value),
      ...audienceVariables(),
    };
    try {
      const answer = await call(M_START, variables);
      const id = answer.startBroadcast.ids[0];
      editStep();
      ['f-name', 'f-subject', 'f-body'].forEach((fid) => { $(fid).value = ''; updateCounter($(fid)); });
      $('f-start-at').value = '';
      state.index = 0;
      follow(id);
    } catch (err) {
      editStep();
      showErrors(form, err.errors, $('send-error'));
      if (!form.querySelector('[aria-invalid="true"]')) { $('send-error').focus(); }
    } finally {
      $('confirm').disabled = false;
    }
  }

  // ---- actions on a job (a dialog asks first) ----------------------------------------------

  const dialog = $('confirm-dialog');
  let pending = null;

  /** Opens the dialog; `run(values)` acts when confirmed and throws ApiErrors to stay open. */
  function ask(options) {
    const form = $('confirm-form');
    clearErrors(form);
    $('confirm-title').textContent = options.title;
    $('confirm-text').textContent = options.text;
    $('amend-fields').hidden = !options.amend;
    $('rate-field').hidden = options.rate === undefined;
    if (options.amend) {
      $('a-subject').value = options.amend.subject;
      $('a-body').value = options.amend.body;
      updateCounter($('a-subject'));
      updateCounter($('a-body'));
    }
    if (options.rate !== undefined) { $('a-rate').value = String(options.rate); }
    const yes = $('confirm-yes');
    yes.textContent = options.confirm;
    yes.className = options.danger ? 'danger' : '';
    pending = options.run;
    dialog.showModal();
    (options.amend ? $('a-body') : options.rate !== undefined ? $('a-rate') : $('confirm-no')).focus();
  }

  async function confirmed() {
    if (!pending) { return; }
    const form = $('confirm-form');
    clearErrors(form);
    $('confirm-yes').disabled = true;
    try {
      await pending({
        subject: $('a-subject').value,
        body: $('a-body').value,
        rate: rateValue($('a-rate').value),
      });
      pending = null;
      dialog.close();
      refresh();
    } catch (err) {
      if (!err.errors) { throw err; }
      showErrors(form, err.errors, $('confirm-error'));
    } finally {
      $('confirm-yes').disabled = false;
    }
  }

  async function reach(job) {
    const answer = await call(Q_COUNT, { domain: state.domain, amends: job.id });
    return answer.countBroadcastRecipients.recipientCount;
  }

  async function act(name, id) {
    const job = state.jobs.find((j) => j.id === id);
    if (!job) { return; }
    const domain = state.domain;
    $('jobs-error').textContent = '';
    try {
      if (name === 'pause' || name === 'resume') {
        // Neither loses anything: no confirmation.
        await call(name === 'pause' ? M_PAUSE : M_RESUME, { domain: domain, id: id });
        $('live').textContent = 'Job ' + id + (name === 'pause' ? ' paused.' : ' resumed.');
        refresh();
      } else if (name === 'abort') {
        ask({
          title: 'Abort job #' + id + '?', danger: true, confirm: 'Abort job #' + id,
          text: 'Sending stops now; the ' + (job.recipientsCounted === false ? ''
            : (job.recipientCount - job.recipientsProcessed) + ' ') +
            'recipients not reached yet will not get "' + job.name + '".',
          run: () => call(M_ABORT, { domain: domain, id: id }),
        });
      } else if (name === 'delete') {
        ask({
          title: 'Delete job #' + id + '?', danger: true, confirm: 'Delete job #' + id,
          text: 'The record of "' + job.name + '" is removed for good; messages already sent stay.',
          run: () => call(M_DELETE, { domain: domain, ids: [id] }),
        });
      } else if (name === 'correct') {
        const n = await reach(job);
        ask({
          title: 'Correct job #' + id, confirm: 'Send the correction to ' + n + ' users',
          text: 'Each of the ' + n + ' users job #' + id + ' may have reached gets a correction that replaces its message (XEP-0308).',
          amend: { subject: job.messageSubject, body: job.messageBody }, rate: job.messageRate,
          run: async (values) => {
            const answer = await call(M_CORRECT, { domain: domain, id: id, subject: values.subject,
              body: values.body, rate: values.rate, key: newKey() });
            state.followed = answer.correctBroadcast.ids[0];
          },
        });
      } else if (name === 'retract') {
        const n = await reach(job);
        ask({
          title: 'Retract job #' + id + '?', danger: true, confirm: 'Retract from ' + n + ' users',
          text: 'Each of the ' + n + ' users job #' + id + ' may have reached is asked to remove its message (XEP-0424).',
          rate: job.messageRate,
          run: async (values) => {
            const answer = await call(M_RETRACT, { domain: domain, id: id, rate: values.rate, key: newKey() });
            state.followed = answer.retractBroadcast.ids[0];
          },
        });
      }
    } catch (err) {
      $('jobs-error').textContent = err.errors ? err.errors.map(explain).join(' ') : String(err);
    }
  }

  // ---- wiring ------------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    $('login').addEventListener('submit', login);
    $('logout').addEventListener('click', () => logout());
    $('domain').addEventListener('change', (e) => selectDomain(e.target.value));
    $('send').addEventListener('submit', dryRun);
    AUDIENCE_CHOICES.forEach((id) => $(id).addEventListener('change', showAudience));
    $('confirm').addEventListener('click', send);
    $('edit').addEventListener('click', () => { editStep(); $('f-body').focus(); });
    $('newer').addEventListener('click', () => { state.index = Math.max(0, state.index - PAGE_SIZE); refresh(); });
    $('older').addEventListener('click', () => { state.index += PAGE_SIZE; refresh(); });
    $('jobs').addEventListener('click', (e) => {
      const button = e.target.closest('button[data-action]');
      if (button) { act(button.dataset.action, Number(button.dataset.id)); }
    });
    $('confirm-yes').addEventListener('click', confirmed);
    $('confirm-no').addEventListener('click', () => { pending = null; dialog.close(); });
    dialog.addEventListener('close', () => { pending = null; });
    ['f-name', 'f-subject', 'f-body', 'a-subject', 'a-body'].forEach((id) => {
      ['input', 'change'].forEach((type) => $(id).addEventListener(type, () => updateCounter($(id))));
      updateCounter($(id));
    });
    $('username').focus();
  });
}());
