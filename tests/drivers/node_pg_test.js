// node-postgres (npm `pg`) against a PostgreSQL-compatible server (issue 6, item 6).
//
// Usage: NODE_PATH=<dir with node_modules/pg> node node_pg_test.js [URL]
// (or CHITIN_DRIVER_URL). Prints each check; exits non-zero on the first failure.
'use strict';

const { Client } = require('pg');

const url = process.argv[2] || process.env.CHITIN_DRIVER_URL ||
  'postgresql://root@127.0.0.1:26257/defaultdb';

function check(name, got, want) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) {
    throw new Error(`${name}: got ${g}, want ${w}`);
  }
  console.log(`ok  ${name}`);
}

async function expectError(client, sql, params, code, name) {
  try {
    await client.query(sql, params);
  } catch (e) {
    check(name, e.code, code);
    return;
  }
  throw new Error(`${name}: no error`);
}

async function main() {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 10000 });
  await client.connect();
  const v = await client.query('SHOW server_version');
  console.log(`connected: server_version ${v.rows[0].server_version}`);

  await client.query('DROP TABLE IF EXISTS nodepg_t');
  await client.query(`CREATE TABLE nodepg_t (
    id INT PRIMARY KEY, name TEXT NOT NULL, big BIGINT, n NUMERIC(10,2), f FLOAT8,
    b BOOL, by BYTEA, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, u UUID)`);

  // Parameterized queries ($1 ...): the extended protocol with text parameters.
  const r = await client.query(
    'INSERT INTO nodepg_t VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)',
    [1, 'one', '9007199254740993', '12.50', 0.25, true, Buffer.from([0, 1, 255]),
      '2024-02-29', '2024-02-29 23:59:59.5', new Date(Date.UTC(2024, 5, 1, 10, 0, 0)),
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']);
  check('insert rowCount', r.rowCount, 1);
  await client.query('INSERT INTO nodepg_t (id, name) VALUES ($1, $2)', [2, 'two']);

  const sel = await client.query('SELECT * FROM nodepg_t WHERE id = $1', [1]);
  const row = sel.rows[0];
  check('int', row.id, 1);
  check('text', row.name, 'one');
  check('bigint as string', row.big, '9007199254740993');
  check('numeric as string', row.n, '12.50');
  check('float8', row.f, 0.25);
  check('bool', row.b, true);
  check('bytea', [...row.by], [0, 1, 255]);
  check('date', row.d instanceof Date, true);
  check('timestamptz', row.tz.toISOString(), '2024-06-01T10:00:00.000Z');
  check('uuid', row.u, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
  check('field types', sel.fields.map((f) => f.dataTypeID),
    [23, 25, 20, 1700, 701, 16, 17, 1082, 1114, 1184, 2950]);
  const nulls = await client.query('SELECT big, n, b, u FROM nodepg_t WHERE id = $1', [2]);
  check('NULLs', nulls.rows[0], { big: null, n: null, b: null, u: null });

  // A named prepared statement, executed several times.
  for (let i = 3; i < 8; i++) {
    await client.query({ name: 'ins', text: 'INSERT INTO nodepg_t (id, name) VALUES ($1, $2)', values: [i, `n${i}`] });
  }
  const cnt = await client.query({ name: 'cnt', text: 'SELECT count(*)::int AS c FROM nodepg_t WHERE id > $1', values: [2] });
  check('named prepared statement', cnt.rows[0].c, 5);
  const arr = await client.query({ text: 'SELECT id, name FROM nodepg_t ORDER BY id LIMIT 2', rowMode: 'array' });
  check('rowMode array', arr.rows, [[1, 'one'], [2, 'two']]);

  // Transactions.
  await client.query('BEGIN');
  await client.query('INSERT INTO nodepg_t (id, name) VALUES ($1, $2)', [100, 'x']);
  await client.query('ROLLBACK');
  check('rollback', (await client.query('SELECT count(*)::int AS c FROM nodepg_t WHERE id = 100')).rows[0].c, 0);
  await client.query('BEGIN');
  await client.query('INSERT INTO nodepg_t (id, name) VALUES ($1, $2)', [101, 'y']);
  await client.query('COMMIT');
  check('commit', (await client.query('SELECT count(*)::int AS c FROM nodepg_t WHERE id = 101')).rows[0].c, 1);

  // Errors carry SQLSTATEs; the connection stays usable.
  await expectError(client, 'INSERT INTO nodepg_t (id, name) VALUES ($1, $2)', [1, 'dup'], '23505', 'unique violation 23505');
  await expectError(client, 'INSERT INTO nodepg_t (id) VALUES ($1)', [200], '23502', 'not null violation 23502');
  await expectError(client, 'SELECT * FROM nodepg_no_such', [], '42P01', 'undefined table 42P01');
  await expectError(client, 'SELEC 1', [], '42601', 'syntax error 42601');
  await client.query('BEGIN');
  await expectError(client, 'SELECT 1/0', [], '22012', 'division by zero 22012');
  await expectError(client, 'SELECT 1', [], '25P02', 'in failed transaction 25P02');
  await client.query('ROLLBACK');
  check('usable after errors', (await client.query('SELECT 1 AS one')).rows[0].one, 1);

  await client.query('DROP TABLE nodepg_t');
  await client.end();
  console.log('node-postgres: all checks passed');
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  console.error(`FAILED: ${e && e.message}`);
  process.exit(1);
});
