// CHT Bridge mapping runtime, loaded once into an embedded V8 (mini-racer) per sandbox, inside one
// function with hydration.js (see sandbox/__init__.py), so none of its names is a global.
//
// It reproduces CHT outbound semantics (shared-libs/outbound): `relevant_to` and `expr` see only
// `doc`; string sources are object-paths resolved against {doc}; destination keys are
// object-paths where a numeric segment creates an array; `undefined` is left out while null,
// false, 0 and '' are kept; the payload is what JSON.stringify would send, and the hash input is
// CHT's key-sorted stringify of it. There is no I/O here: V8 alone has none.
'use strict';

var __chtMapping = (function () {
  var pipelines = [];
  var hasOwnProperty = Object.prototype.hasOwnProperty; // taken before any snippet runs
  var objectToString = Object.prototype.toString;
  var current = ''; // what is running: 'relevant_to' or a mapping key, read after a timeout or OOM
  // Set by the bridge: undoes what a snippet changed outside its document (new globals, Object's
  // own methods). Run between the documents of a pipeline that gets copies, as CHT gives every
  // document a fresh context; a pipeline that shares its lineages writes nothing (purity.js).
  var between = null;
  var KINDS = [EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError, AggregateError];

  // V8's messages that say what went wrong without a value, once quoted and numeric parts are
  // taken out ("Cannot read properties of undefined (reading '…')", "x.y is not a function").
  var KNOWN = [
    /^Cannot (read|set) properties of (undefined|null) \((reading|setting) …\)$/,
    /^(\w+ )?[\w$.…\[\]()]+ is not (a function|a constructor|iterable|defined|an object)$/,
    /^Cannot create property … on (string|number|boolean|bigint|symbol) …$/,
    /^Cannot convert undefined or null to object$/,
    /^Cannot access … before initialization$/,
    /^Assignment to constant variable\.$/,
    /^Invalid (time value|count value: …|string length|array length)$/,
    /^Maximum call stack size exceeded$/,
    /^Reduce of empty array with no initial value$/,
    /^Cannot mix BigInt and other types, use explicit conversions$/,
    /^Do not know how to serialize a BigInt$/
  ];

  // A snippet's error in words that hold no value of the document, on one line: its kind, and
  // V8's message only when it is one of the KNOWN shapes once anything quoted or numeric is
  // taken out. V8 quotes values in many messages (JSON.parse quotes the text, BigInt the number or
  // string), and a message a snippet wrote itself (`throw new Error(...)`, or throwing a value)
  // may be built from the document, so those are not kept.
  function describe(e) {
    try {
      return describeError(e);
    } catch (ignored) { // a thrown Proxy or a throwing getter: not worth more than its name
      return 'an error that cannot be described';
    }
  }

  function describeError(e) {
    var kind = null;
    for (var i = 0; i < KINDS.length; i++) {
      if (e instanceof KINDS[i]) {
        kind = KINDS[i].prototype.name;
        break;
      }
    }
    if (kind === null) {
      return e instanceof Error ? 'Error (its message is not kept: it may hold document values)'
        : 'a thrown ' + (e === null ? 'null' : typeof e) + ' (its value is not kept)';
    }
    var message = typeof e.message === 'string' ? e.message : '';
    if (/JSON/.test(message) && kind === 'SyntaxError') {
      return kind + ': the text given to JSON.parse is not valid JSON';
    }
    if (/BigInt/.test(message) && (kind === 'SyntaxError' || kind === 'RangeError')) {
      return kind + ': a value cannot be converted to a BigInt';
    }
    message = message
      .replace(/'[^']*'|"[^"]*"|`[^`]*`/g, '…')
      .replace(/[-+]?\d[\d.,eE+-]*/g, '…')
      .replace(/[\s\u2028\u2029]+/g, ' ')
      .slice(0, 200);
    for (var k = 0; k < KNOWN.length; k++) {
      if (KNOWN[k].test(message)) {
        return kind + ': ' + (k === NAMED ? named(message) : message);
      }
    }
    return kind + ' (its message is not kept: it may hold document values)';
  }

  // "X is not a function / defined …": V8 names X from the snippet's code, but a snippet can
  // throw that shape itself with X built from the document (`throw new TypeError(doc.name + ' is
  // not defined')`). X is kept only when each of its words is in a pipeline's code (or is a type
  // name or an elided part).
  var NAMED = 1;
  var TYPE_WORDS = ['string', 'number', 'boolean', 'bigint', 'symbol', 'object', 'function', 'undefined', 'null', '…'];
  var sources = ''; // every compiled pipeline's code, for `named`

  function named(message) {
    var at = message.indexOf(' is not ');
    var words = message.slice(0, at).split(' ');
    for (var i = 0; i < words.length; i++) {
      if (TYPE_WORDS.indexOf(words[i]) === -1 && sources.indexOf(words[i]) === -1) {
        return '…' + message.slice(at);
      }
    }
    return message;
  }

  // An id for a message: on one line.
  function idText(doc) {
    return oneLine(String(doc && doc._id));
  }

  function oneLine(text) {
    return text.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, ' ');
  }

  // A document's id, read before any snippet runs, for the messages about it (`oneLine` makes it
  // fit one, once a message needs it). A string is kept as it is: it cannot change, and a regex
  // replace on every document's id cost more than a tenth of the mapping for messages hardly ever
  // written. Any other value is made text at once, as a snippet may change what String() makes of it.
  function idOf(doc) {
    var id = doc && doc._id;
    return typeof id === 'string' ? id : idText(doc);
  }

  // A path segment that is a canonical integer addresses an array index.
  function segment(text) {
    var n = parseInt(text, 10);
    return String(n) === text ? n : text;
  }

  function hasOwn(obj, key) {
    if (obj === null || obj === undefined) {
      return false;
    }
    return (typeof key === 'number' && Array.isArray(obj)) || hasOwnProperty.call(obj, key);
  }

  function getPath(root, path) {
    return getParts(root, path.split('.').map(segment));
  }

  // A path's segments are split once, when the pipeline is compiled (see addPipeline).
  function getParts(root, parts) {
    var current = root;
    for (var i = 0; i < parts.length; i++) {
      if (current === null || current === undefined) {
        return undefined;
      }
      var key = parts[i];
      current = hasOwn(current, key) ? current[key] : undefined;
      if (current === undefined) {
        return undefined;
      }
    }
    return current;
  }

  function setParts(target, parts, value) {
    var current = target;
    for (var i = 0; i < parts.length - 1; i++) {
      var key = parts[i];
      if ((hasOwn(current, key) ? current[key] : undefined) === undefined) {
        current[key] = typeof parts[i + 1] === 'number' ? [] : {};
      }
      current = current[key];
    }
    current[parts[parts.length - 1]] = value;
  }

  // CHT's hash input: objects with keys sorted, everything else as JSON.stringify writes it.
  function ordered(thing) {
    if (objectToString.call(thing) === '[object Object]') {
      var keys = Object.keys(thing).sort();
      var parts = [];
      for (var i = 0; i < keys.length; i++) {
        parts.push('"' + keys[i] + '":' + ordered(thing[keys[i]]));
      }
      return '{' + parts.join(',') + '}';
    }
    return JSON.stringify(thing);
  }

  // The hash input without parsing the body again, for a payload made only of the mapping's own
  // keys and values that are strings, numbers, booleans or null: then `ordered(JSON.parse(body))`
  // is known in advance up to the values, each written as JSON.stringify writes it (which is what
  // the round trip gives back), and the keys are sorted once, when the pipeline is compiled. A
  // pipeline qualifies when no destination key has a numeric segment (an array) or `__proto__`,
  // and none is a prefix of another (`a` and `a.b`); `shape` builds the sorted tree, or gives null.
  // It relies on snippets being unable to change how a payload object is built or written, which
  // lockdown.js ensures before this file loads: the global `JSON` is a constant and frozen (no new
  // JSON.stringify); Object.prototype is not extensible (no `toJSON`, no setter a payload key would
  // hit) and its own properties are non-configurable, their values put back by `restore` after
  // every call (a change it cannot undo fails the call: TAMPERED in __chtBridge).
  function shape(entries) {
    var root = { kids: Object.create(null), keys: null };
    for (var e = 0; e < entries.length; e++) {
      var parts = entries[e].destParts;
      var node = root;
      for (var i = 0; i < parts.length; i++) {
        var key = parts[i];
        if (typeof key !== 'string' || key === '__proto__') {
          return null;
        }
        var kid = node.kids[key];
        if (i === parts.length - 1) {
          if (kid !== undefined) {
            return null;
          }
          node.kids[key] = { leaf: e };
        } else if (kid === undefined) {
          node = node.kids[key] = { kids: Object.create(null), keys: null };
        } else if (kid.leaf !== undefined) {
          return null;
        } else {
          node = kid;
        }
      }
    }
    (function sortKeys(node) {
      node.keys = Object.keys(node.kids).sort();
      node.keys.forEach(function (key) {
        if (node.kids[key].leaf === undefined) {
          sortKeys(node.kids[key]);
        }
      });
    })(root);
    // When every entry has a value (the common case), the text is fixed pieces and the values in
    // key order: `pieces[k]` comes before the value of entry `leaves[k]`, `tail` after the last.
    root.leaves = [];
    root.pieces = [];
    var piece = '';
    (function flatten(node) {
      piece += '{';
      node.keys.forEach(function (key, i) {
        piece += (i === 0 ? '"' : ',"') + key + '":';
        var kid = node.kids[key];
        if (kid.leaf !== undefined) {
          root.leaves.push(kid.leaf);
          root.pieces.push(piece);
          piece = '';
        } else {
          flatten(kid);
        }
      });
      piece += '}';
    })(root);
    root.tail = piece;
    // Whether no key holds a US (\x1f): then neither does the hash input written from this tree
    // (JSON.stringify escapes it in values), and `encode` need not look for one.
    root.plain = root.pieces.join('').indexOf('\x1f') < 0 && piece.indexOf('\x1f') < 0;
    root.literals = literals(entries, root);
    return root;
  }

  // When every entry has a value, a shaped payload and its hash input are written by JSON.stringify
  // from objects made by two functions compiled here from the keys (object literals: no lookups,
  // one shape), instead of by `setParts` and a text built piece by piece, which cost about twice
  // as much. `body` makes the payload with its keys in the order `setParts` makes them (the
  // entries' order, each object where its first value puts it); `sorted` makes it with every
  // object's keys sorted, which JSON.stringify writes as `ordered` does when no key holds a
  // character JSON.stringify escapes (`ordered` writes keys as they are); else `sorted` is null.
  // Both are checked against `setParts` and `written` once, here, on sample values, and neither
  // is used unless they agree. Keys go into the code as JSON.stringify writes them: string
  // literals, which hold any character; `__proto__`, which a literal would make the prototype, is
  // never in a shaped pipeline.
  function literals(entries, root) {
    var template = {};
    var leaves = new Map(); // a marker object -> its entry
    entries.forEach(function (entry, e) {
      var marker = {};
      leaves.set(marker, e);
      setParts(template, entry.destParts, marker);
    });
    var code = function (object, keys) {
      return '{' + keys.map(function (key) {
        var value = object[key];
        return JSON.stringify(key) + ':' + (leaves.has(value) ? 'v[' + leaves.get(value) + ']' : code(value, Object.keys(value)));
      }).join(',') + '}';
    };
    var sortedCode = function (node) {
      return '{' + node.keys.map(function (key) {
        var kid = node.kids[key];
        return JSON.stringify(key) + ':' + (kid.leaf !== undefined ? 'v[' + kid.leaf + ']' : sortedCode(kid));
      }).join(',') + '}';
    };
    var plainKeys = true;
    (function check(node) {
      node.keys.forEach(function (key) {
        plainKeys = plainKeys && JSON.stringify(key) === '"' + key + '"';
        if (node.kids[key].leaf === undefined) {
          check(node.kids[key]);
        }
      });
    })(root);
    var out = {
      body: new Function('v', "'use strict'; return " + code(template, Object.keys(template)) + ';'),
      sorted: plainKeys ? new Function('v', "'use strict'; return " + sortedCode(root) + ';') : null
    };
    // The check: distinct values of each kind a payload may hold.
    var samples = [entries.map(function (_, e) { return 'v' + e; }), entries.map(function (_, e) { return e % 3 ? e : null; })];
    for (var k = 0; k < samples.length; k++) {
      var expected = {};
      for (var e = 0; e < entries.length; e++) {
        setParts(expected, entries[e].destParts, samples[k][e]);
      }
      if (JSON.stringify(out.body(samples[k])) !== JSON.stringify(expected)) {
        return null;
      }
      if (out.sorted !== null && JSON.stringify(out.sorted(samples[k])) !== written(root, samples[k])) {
        out.sorted = null;
      }
    }
    return out;
  }

  // `ordered` of the payload `shape` describes, given each entry's value (undefined: left out).
  // An object none of whose values was set was never made (setParts makes it with its first
  // value), so it is left out too; the payload itself is always there.
  function orderedShape(node, values, top) {
    var text = '';
    for (var i = 0; i < node.keys.length; i++) {
      var kid = node.kids[node.keys[i]];
      var part = kid.leaf !== undefined
        ? (values[kid.leaf] === undefined ? undefined : JSON.stringify(values[kid.leaf]))
        : orderedShape(kid, values, false);
      if (part !== undefined) {
        text += (text === '' ? '"' : ',"') + node.keys[i] + '":' + part;
      }
    }
    return text !== '' || top ? '{' + text + '}' : undefined;
  }

  // The hash input of a payload `shape` describes; `count`: how many entries have a value.
  function canonical(shape, values, count) {
    return count < shape.leaves.length ? orderedShape(shape, values, true) : written(shape, values);
  }

  // The hash input `shape` describes when every entry has a value.
  function written(shape, values) {
    var text = '';
    for (var k = 0; k < shape.leaves.length; k++) {
      text += shape.pieces[k] + JSON.stringify(values[shape.leaves[k]]);
    }
    return text + shape.tail;
  }

  function primitive(value) {
    var type = typeof value;
    return value === null || type === 'string' || type === 'number' || type === 'boolean';
  }

  // Compile a snippet once. An expression becomes a function body directly; anything else
  // (statements) is run through a direct eval so its completion value is the result, as
  // vm.runInNewContext gives. Functions built here are sloppy-mode, like CHT's vm scripts.
  function compile(code) {
    try {
      return new Function('doc', 'return (' + code + '\n);');
    } catch (e) {
      if (!(e instanceof SyntaxError)) {
        throw e;
      }
    }
    new Function('doc', code); // throws the snippet's own SyntaxError if it is not a script
    return new Function('doc', 'return eval(' + JSON.stringify(code) + ');');
  }

  function addPipeline(name, relevantTo, mappingJson) {
    var mapping = JSON.parse(mappingJson);
    sources += '\n' + relevantTo + '\n' + mappingJson;
    var problems = [];
    var relevant = null;
    try {
      relevant = compile(relevantTo);
    } catch (e) {
      problems.push('relevant_to: ' + String(e));
    }
    var entries = [];
    Object.keys(mapping).forEach(function (dest) {
      var source = mapping[dest];
      var entry = { dest: dest, destParts: dest.split('.').map(segment), path: undefined, parts: null, expr: null, required: true };
      if (typeof source === 'string') {
        entry.path = source;
      } else {
        entry.path = source.path;
        entry.required = !source.optional;
        if (source.expr) {
          try {
            entry.expr = compile(String(source.expr));
          } catch (e) {
            problems.push('mapping.' + dest + '.expr: ' + String(e));
          }
        }
      }
      if (typeof entry.path === 'string' && entry.path !== '') {
        entry.parts = entry.path.split('.').map(segment);
      }
      entries.push(entry);
    });
    if (problems.length) {
      return JSON.stringify({ problems: problems });
    }
    var p = { name: name, relevant: relevant, entries: entries, shape: shape(entries), shares: shares(relevantTo, entries, mapping) };
    pipelines.push(p);
    // `shaped`: the hash input is written from the compiled tree (for tests; a document with a
    // value that is not a string, number, boolean or null still falls back to `ordered`).
    // `shares`: the documents of a batch share their hydrated lineages (hydration.js), for tests.
    // `literals`: a document with every value is written by the compiled `literals` (for tests).
    return JSON.stringify({
      id: pipelines.length - 1, shaped: p.shape !== null, shares: p.shares, literals: p.shape !== null && p.shape.literals !== null
    });
  }

  // Whether a batch's documents may share their hydrated lineages instead of each getting copies:
  // when every snippet is read-only (purity.js) and the payload is never written into a value
  // taken from the document, which `setParts` would do for a key under another (`a` and `a.b`) or
  // under `__proto__`.
  function shares(relevantTo, entries, mapping) {
    if (!__chtPurity.readOnly(relevantTo)) {
      return false;
    }
    var dests = entries.map(function (m) { return m.dest; });
    for (var i = 0; i < entries.length; i++) {
      var source = mapping[entries[i].dest];
      if (source && typeof source === 'object' && source.expr && !__chtPurity.readOnly(String(source.expr))) {
        return false;
      }
      if (entries[i].destParts.indexOf('__proto__') >= 0) {
        return false;
      }
      for (var j = 0; j < dests.length; j++) {
        if (dests[j].indexOf(dests[i] + '.') === 0) {
          return false;
        }
      }
    }
    return true;
  }

  function where(p, m) {
    return "Mapping error for '" + p.name + '/' + m.dest + "'";
  }

  // A shaped pipeline's payload object is made only once every entry has been evaluated (no
  // snippet can see it); when every entry has a string, number, boolean or null, it is made by the
  // compiled `literals` instead, which also make its hash input. Putting the values in later
  // changes no outcome: `setParts` cannot fail on a shaped payload (fresh objects, string keys,
  // none `__proto__`) short of a change to Object.prototype that `restore` cannot undo, which
  // fails the whole call anyway (TAMPERED).
  function mapDoc(p, doc, id) {
    var scope = { doc: doc };
    var payload = {};
    var shape = p.shape;
    var values = shape !== null ? new Array(p.entries.length) : null; // what each entry set
    var count = 0;
    var flat = shape !== null; // every value so far a string, number, boolean or null
    for (var i = 0; i < p.entries.length; i++) {
      var m = p.entries[i];
      var value;
      current = m.dest;
      if (m.expr) {
        try {
          value = m.expr.call(scope, doc);
        } catch (e) {
          return { e: where(p, m) + " JS error on source document: '" + oneLine(id) + "': " + describe(e) };
        }
      } else if (m.parts) {
        value = getParts(scope, m.parts);
      } else if (m.path) {
        value = getPath(scope, m.path);
      } else {
        return { e: where(p, m) + " either 'expr' or 'path' is required: '" + oneLine(id) + "'" };
      }
      if (m.required && value === undefined) {
        var problem = m.expr ? 'expr evaluated to undefined' : "cannot find '" + m.path + "' on source document";
        return { e: where(p, m) + " on source document '" + oneLine(id) + "': " + problem };
      }
      if (value === undefined) {
        continue;
      }
      if (values !== null) {
        values[i] = value;
        count++;
        flat = flat && primitive(value);
      } else {
        var failed = set(p, m, payload, value, id);
        if (failed !== null) {
          return failed;
        }
      }
    }
    if (flat && count === values.length && shape.literals !== null) {
      var made = shape.literals;
      current = 'the payload';
      var text;
      try {
        text = JSON.stringify(made.body(values));
      } catch (e) { // a string too long to write
        return { e: unwritable(p, id, e) };
      }
      return { b: text, h: made.sorted !== null ? JSON.stringify(made.sorted(values)) : written(shape, values), plain: shape.plain };
    }
    for (var k = 0; values !== null && k < values.length; k++) {
      if (values[k] !== undefined) {
        current = p.entries[k].dest;
        var unset = set(p, p.entries[k], payload, values[k], id);
        if (unset !== null) {
          return unset;
        }
      }
    }
    current = 'the payload';
    var body;
    try {
      body = JSON.stringify(payload);
    } catch (e) { // a BigInt, a cycle, a throwing toJSON: what CHT would fail to send too
      return { e: unwritable(p, id, e) };
    }
    if (flat) {
      return { b: body, h: canonical(shape, values, count), plain: shape.plain };
    }
    return { b: body, h: ordered(JSON.parse(body)), plain: false };
  }

  // The error of a document whose payload JSON.stringify cannot write.
  function unwritable(p, id, e) {
    return "Mapping error for '" + p.name + "' on source document '" + oneLine(id) + "': the payload cannot be written as JSON: " + describe(e);
  }

  // Entry `m`'s value put in the payload; null, or the document's error when it cannot be.
  function set(p, m, payload, value, id) {
    try {
      setParts(payload, m.destParts, value);
    } catch (e) {
      return { e: where(p, m) + " on source document '" + oneLine(id) + "': cannot set '" + m.dest + "': " + describe(e) };
    }
    return null;
  }

  // Evaluate a pipeline over `count` documents; `get(i)` gives the i-th (hydrated on demand, so a
  // document whose hydration fails fails alone).
  function evaluate(p, count, get) {
    var out = new Array(count);
    var undo = p.shares ? null : between;
    for (var i = 0; i < count; i++) {
      if (i > 0 && undo !== null) {
        undo();
      }
      var doc;
      try {
        doc = get(i);
      } catch (e) {
        out[i] = { r: 1, e: "Hydration of a document for '" + p.name + "' failed: " + describe(e) };
        continue;
      }
      var relevant;
      var id = idOf(doc); // before any snippet can change doc._id
      current = 'relevant_to';
      try {
        relevant = p.relevant.call({ doc: doc }, doc);
      } catch (e) {
        out[i] = { r: 0, e: "relevant_to of '" + p.name + "' threw on '" + oneLine(id) + "': " + describe(e) };
        continue;
      }
      if (!relevant) {
        out[i] = { r: 0 };
        continue;
      }
      var mapped;
      try {
        mapped = mapDoc(p, doc, id);
      } catch (e) { // e.g. a path read through a getter a snippet put on doc
        mapped = { e: "Mapping error for '" + p.name + "' on source document '" + oneLine(id) + "': " + describe(e) };
      }
      mapped.r = 1;
      out[i] = mapped;
    }
    return out;
  }

  // Results as text that Python splits once: three fields per document, every field followed by
  // US (\x1f) but the last: "0" (not relevant), "e0"/"e1" + a JSON error message (relevant_to
  // failed / mapping failed), "1" + body + canonical, or "2" + body + the canonical as a JSON
  // string. JSON.stringify never writes a raw US, but the canonical text holds the payload's keys
  // as they are (CHT hashes them so), and a key may hold any character: such a canonical is sent
  // escaped ("2"). One split, not one per line and another per field, and each text copied once.
  function encode(results) {
    var fields = new Array(3 * results.length);
    for (var i = 0; i < results.length; i++) {
      var r = results[i];
      var k = 3 * i;
      if (r.e !== undefined) {
        fields[k] = 'e' + r.r;
        fields[k + 1] = JSON.stringify(r.e);
        fields[k + 2] = '';
      } else if (!r.r) {
        fields[k] = '0';
        fields[k + 1] = fields[k + 2] = '';
      } else {
        var plain = r.plain || r.h.indexOf('\x1f') < 0;
        fields[k] = plain ? '1' : '2';
        fields[k + 1] = r.b;
        fields[k + 2] = plain ? r.h : JSON.stringify(r.h);
      }
    }
    return fields.join('\x1f');
  }

  // Evaluate one pipeline over a JSON array of already-hydrated docs; one call per batch.
  function run(id, docsJson) {
    var docs = JSON.parse(docsJson);
    current = '';
    return encode(evaluate(pipelines[id], docs.length, function (i) { return docs[i]; }));
  }

  // Evaluate one pipeline over documents [start, end) of the batch loaded for hydration.
  function runLoaded(id, start, end) {
    var inBatch = __chtHydration.batchIndex();
    var shared = pipelines[id].shares ? new Map() : null;
    current = '';
    return encode(evaluate(pipelines[id], end - start, function (i) { return __chtHydration.hydrate(start + i, inBatch, shared); }));
  }

  return {
    addPipeline: addPipeline,
    setBetween: function (f) { between = f; },
    run: run,
    runLoaded: runLoaded,
    current: function () { return current; }
  };
})();

// What Python holds, as function handles: the bridge has no global name a snippet could reach.
// After every evaluation, `restore` undoes what a snippet changed outside its documents.
function __chtBridge(restore) {
  var TAMPERED = 'cht-bridge: the sandbox was changed in a way that cannot be undone';
  // Also before: V8 runs the Promise jobs a call queued after it returned (and after its
  // `restore`), so what such a job changed is undone before the next documents run. A change
  // `restore` cannot undo (a global or a property made non-configurable) breaks the isolate:
  // the call fails with TAMPERED, and Python rebuilds the isolate and maps the documents alone.
  function undo() {
    try {
      restore();
    } catch (e) {
      throw new Error(TAMPERED);
    }
  }
  function guarded(f) {
    return function () {
      undo();
      try {
        return f.apply(null, arguments);
      } finally {
        undo();
      }
    };
  }
  var h = __chtHydration;
  var m = __chtMapping;
  m.setBetween(undo);
  return {
    configure: h.configure,
    loadPage: h.loadPage,
    loadDocs: h.loadDocs,
    learnDocs: h.learnDocs,
    resolve: h.resolve,
    missing: h.missing,
    addDocs: h.addDocs,
    hydratedJson: h.hydratedJson,
    addPipeline: m.addPipeline,
    run: guarded(m.run),
    runLoaded: guarded(m.runLoaded),
    current: m.current
  };
}
