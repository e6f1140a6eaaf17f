using ExternalData.EventSourced.IntegrationTests.Fixtures;
using Marten;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.IntegrationTests.Operations;

/// <summary>
/// The service's store hands its connections back to a pool. Whatever one use left on a connection — a role, a search path,
/// a temp table (runs make them on the warehouse connection), an advisory lock — must not reach the next use of that same
/// backend, where it would change what a later query reads or writes. The guard for any change to how connections are
/// reset (issue 23: <c>Max Auto Prepare</c> is on, ADR 0053, so the reset is Npgsql's list rather than DISCARD ALL).
/// </summary>
public sealed class when_a_pooled_connection_is_used_again(AppFixture app) : IntegrationContext(app)
{
    [Fact]
    public async Task it_carries_no_session_state_from_its_previous_use()
    {
        var store = App.Host.Services.GetRequiredService<IDocumentStore>();
        var role = $"ed_pool_{Guid.NewGuid():N}"[..20];
        await using (var admin = store.Storage.Database.CreateConnection())
        {
            await admin.OpenAsync();
            await ExecuteAsync(admin, $"CREATE ROLE {role}; GRANT {role} TO current_user");
        }

        try
        {
            int pid;
            string user;
            await using (var first = store.Storage.Database.CreateConnection())
            {
                await first.OpenAsync();
                pid = await ScalarAsync<int>(first, "SELECT pg_backend_pid()");
                user = await ScalarAsync<string>(first, "SELECT current_user");
                // A statement run often enough is prepared on the backend (Max Auto Prepare, ADR 0053): with one prepared,
                // Npgsql resets a returned connection with its own list of resets instead of DISCARD ALL — the case to guard.
                for (var n = 0; n < 6; n++) await ScalarAsync<int>(first, "SELECT 424242");
                (await ScalarAsync<long>(first, "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%424242%'"))
                    .ShouldBe(1, "the store's connections prepare the statements they run again and again");
                await ExecuteAsync(first, $"""
                    SET ROLE {role};
                    SET search_path = pg_temp, public;
                    SET statement_timeout = '1ms';
                    RESET statement_timeout;
                    SET application_name = 'left-over';
                    CREATE TEMP TABLE _ph_left_over (id int);
                    SELECT pg_advisory_lock(424242);
                    """);
            }

            // The pool hands idle backends out in its own order, and the service's background work borrows them too: take
            // connections (holding each) until the one the first use returned comes out again.
            var held = new List<NpgsqlConnection>();
            NpgsqlConnection? again = null;
            try
            {
                for (var n = 0; n < 100 && again is null; n++)
                {
                    var next = store.Storage.Database.CreateConnection();
                    await next.OpenAsync();
                    if (await ScalarAsync<int>(next, "SELECT pg_backend_pid()") == pid) again = next;
                    else held.Add(next);
                }
            }
            finally
            {
                foreach (var connection in held) await connection.DisposeAsync();
            }

            again.ShouldNotBeNull("the pool hands the same backend out again, or this test proves nothing");
            await using var _ = again;
            (await ScalarAsync<string>(again, "SELECT current_user")).ShouldBe(user, "the role set by the previous use");
            (await ScalarAsync<string>(again, "SHOW search_path")).ShouldNotContain("pg_temp");
            (await ScalarAsync<string>(again, "SHOW application_name")).ShouldNotBe("left-over");
            (await ScalarAsync<bool>(again, "SELECT to_regclass('pg_temp._ph_left_over') IS NULL")).ShouldBeTrue("a temp table of the previous use");
            (await ScalarAsync<long>(again, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")).ShouldBe(0, "an advisory lock of the previous use");
            (await ScalarAsync<long>(again, "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%424242%'"))
                .ShouldBe(1, "the prepared statement, and its plan, outlive the return to the pool");
        }
        finally
        {
            await using var admin = new NpgsqlConnection(App.Server.ConnectionStringFor("postgres"));
            await admin.OpenAsync();
            await ExecuteAsync(admin, $"DROP ROLE IF EXISTS {role}");
        }
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}
