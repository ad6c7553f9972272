// The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java) against a
// PostgreSQL-compatible server (issue 6, item 6).
//
// Usage: javac -d OUT Jdbc.java && java -cp OUT:/usr/share/java/postgresql.jar Jdbc URL
// where URL is jdbc:postgresql://127.0.0.1:PORT/db?user=root (or CHITIN_JDBC_URL).
// Prints each check; exits non-zero on the first failure.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.Date;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.sql.Types;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.UUID;

public class Jdbc {
    static void check(String name, Object got, Object want) {
        boolean same = (got instanceof byte[] && want instanceof byte[])
                ? Arrays.equals((byte[]) got, (byte[]) want)
                : Objects.equals(got, want);
        if (!same) {
            throw new AssertionError(name + ": got " + got + ", want " + want);
        }
        System.out.println("ok  " + name);
    }

    static void expectState(Connection c, String sql, String state, String name) throws SQLException {
        try (Statement st = c.createStatement()) {
            st.execute(sql);
        } catch (SQLException e) {
            check(name, e.getSQLState(), state);
            return;
        }
        throw new AssertionError(name + ": no error");
    }

    public static void main(String[] args) throws Exception {
        String url = args.length > 0 ? args[0] : System.getenv("CHITIN_JDBC_URL");
        if (url == null) {
            url = "jdbc:postgresql://127.0.0.1:26257/defaultdb?user=root";
        }
        try {
            run(url);
        } catch (Throwable t) {
            t.printStackTrace();
            System.err.println("FAILED: " + t);
            System.exit(1);
        }
        System.out.println("jdbc: all checks passed");
    }

    static void run(String url) throws Exception {
        DriverManager.setLoginTimeout(10);
        try (Connection c = DriverManager.getConnection(url)) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("connected: " + md.getDatabaseProductName() + " "
                    + md.getDatabaseProductVersion() + ", driver " + md.getDriverVersion());
            try (Statement st = c.createStatement()) {
                st.execute("DROP TABLE IF EXISTS jdbc_t");
                st.execute("CREATE TABLE jdbc_t (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL, big BIGINT,"
                        + " n NUMERIC(10,2), f FLOAT8, b BOOL, by BYTEA, d DATE, ts TIMESTAMP,"
                        + " tz TIMESTAMPTZ, u UUID)");
            }

            // PreparedStatement with typed parameters. After prepareThreshold (5) uses the
            // driver switches to a named server-side statement and binary transfer.
            Timestamp ts = Timestamp.valueOf("2024-02-29 23:59:59.123456");
            Timestamp tz = new Timestamp(1717236000000L); // 2024-06-01 10:00:00 UTC
            UUID u = UUID.fromString("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO jdbc_t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                for (int i = 1; i <= 8; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "name" + i);
                    ps.setLong(3, 9_000_000_000L + i);
                    ps.setBigDecimal(4, new BigDecimal("12.50").add(BigDecimal.valueOf(i)));
                    ps.setDouble(5, 0.25 * i);
                    ps.setBoolean(6, i % 2 == 0);
                    ps.setBytes(7, new byte[] {0, 1, (byte) 255, (byte) i});
                    ps.setDate(8, Date.valueOf("2024-02-29"));
                    ps.setTimestamp(9, ts);
                    ps.setTimestamp(10, tz);
                    ps.setObject(11, u);
                    check("insert " + i, ps.executeUpdate(), 1);
                }
            }
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_t (id, name) VALUES (?, ?)")) {
                ps.setInt(1, 9);
                ps.setString(2, "nulls");
                ps.executeUpdate();
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT * FROM jdbc_t WHERE id = ?")) {
                for (int round = 0; round < 7; round++) {
                    ps.setInt(1, 2);
                    try (ResultSet rs = ps.executeQuery()) {
                        check("row found (round " + round + ")", rs.next(), true);
                        check("int", rs.getInt("id"), 2);
                        check("varchar", rs.getString("name"), "name2");
                        check("bigint", rs.getLong("big"), 9_000_000_002L);
                        check("numeric", rs.getBigDecimal("n"), new BigDecimal("14.50"));
                        check("float8", rs.getDouble("f"), 0.5);
                        check("bool", rs.getBoolean("b"), true);
                        check("bytea", rs.getBytes("by"), new byte[] {0, 1, (byte) 255, 2});
                        check("date", rs.getDate("d").toString(), "2024-02-29");
                        check("timestamp", rs.getTimestamp("ts"), ts);
                        check("timestamptz", rs.getTimestamp("tz").getTime(), tz.getTime());
                        check("uuid", rs.getObject("u"), u);
                        check("column type", rs.getMetaData().getColumnType(4), Types.NUMERIC);
                        check("one row", rs.next(), false);
                    }
                }
                ps.setInt(1, 9);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    rs.getLong("big");
                    check("NULL bigint", rs.wasNull(), true);
                    check("NULL numeric", rs.getBigDecimal("n"), null);
                    check("NULL uuid", rs.getObject("u"), null);
                }
            }

            // Batch.
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO jdbc_t (id, name, big) VALUES (?, ?, ?)")) {
                for (int i = 100; i < 150; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "batch" + i);
                    ps.setLong(3, i);
                    ps.addBatch();
                }
                int[] counts = ps.executeBatch();
                check("batch size", counts.length, 50);
            }
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(
                    "SELECT count(*), sum(big) FROM jdbc_t WHERE id >= 100")) {
                rs.next();
                check("batch rows", rs.getLong(1), 50L);
                check("batch sum", rs.getLong(2), 6225L);
            }

            // Transactions.
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                st.executeUpdate("INSERT INTO jdbc_t (id, name) VALUES (500, 'rolled back')");
                c.rollback();
                st.executeUpdate("INSERT INTO jdbc_t (id, name) VALUES (501, 'committed')");
                c.commit();
                try (ResultSet rs = st.executeQuery("SELECT id FROM jdbc_t WHERE id >= 500")) {
                    List<Integer> ids = new ArrayList<>();
                    while (rs.next()) {
                        ids.add(rs.getInt(1));
                    }
                    check("rollback and commit", ids, List.of(501));
                }
                c.commit();
            }
            // An error inside a transaction aborts it (25P02) until rollback.
            expectState(c, "INSERT INTO jdbc_t (id, name) VALUES (1, 'dup')", "23505", "unique violation 23505");
            expectState(c, "SELECT 1", "25P02", "in failed transaction 25P02");
            c.rollback();
            c.setAutoCommit(true);
            expectState(c, "SELECT * FROM jdbc_no_such", "42P01", "undefined table 42P01");
            expectState(c, "INSERT INTO jdbc_t (id) VALUES (600)", "23502", "not null 23502");
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT 41 + 1")) {
                rs.next();
                check("usable after errors", rs.getInt(1), 42);
            }

            // Metadata: the driver's own pg_catalog queries.
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "public", "jdbc_%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    tables.add(rs.getString("TABLE_NAME"));
                }
            }
            check("getTables", tables, List.of("jdbc_t"));
            List<String> cols = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", "jdbc_t", "%")) {
                while (rs.next()) {
                    cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME")
                            + ":" + rs.getInt("NULLABLE"));
                }
            }
            check("getColumns", cols, List.of("id:int4:0", "name:varchar:0", "big:int8:1",
                    "n:numeric:1", "f:float8:1", "b:bool:1", "by:bytea:1", "d:date:1",
                    "ts:timestamp:1", "tz:timestamptz:1", "u:uuid:1"));
            // getPrimaryKeys reads information_schema._pg_expandarray(), a set-returning
            // function of a composite type; CHITIN_JDBC_PRIMARY_KEYS=0 leaves it out.
            if (!"0".equals(System.getenv("CHITIN_JDBC_PRIMARY_KEYS"))) {
                List<String> pk = new ArrayList<>();
                try (ResultSet rs = md.getPrimaryKeys(null, "public", "jdbc_t")) {
                    while (rs.next()) {
                        pk.add(rs.getString("COLUMN_NAME") + "#" + rs.getInt("KEY_SEQ"));
                    }
                }
                check("getPrimaryKeys", pk, List.of("id#1"));
            }

            try (Statement st = c.createStatement()) {
                st.execute("DROP TABLE jdbc_t");
            }
        }
    }
}
