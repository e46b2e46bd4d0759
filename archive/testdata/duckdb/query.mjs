// Runs one SQL statement (read from stdin) in an in-memory DuckDB and prints
// the rows as a JSON array. herd's archive tests use it to read the lake
// the way an analyst would.
import { DuckDBInstance } from '@duckdb/node-api';

let sql = '';
for await (const chunk of process.stdin) sql += chunk;
const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
const reader = await conn.runAndReadAll(sql);
process.stdout.write(JSON.stringify(reader.getRowObjectsJson()));
