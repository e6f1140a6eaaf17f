using System.Net.Sockets;
using ExternalData.EventSourced.Infrastructure.Http;
using Npgsql;
using Shouldly;

namespace ExternalData.EventSourced.UnitTests.Infrastructure;

/// <summary>Which failures are an outage (503, retry) and which are not (left to the other handlers, or a 500).</summary>
public sealed class when_the_database_is_unavailable
{
    [Fact]
    public void connection_failures_and_shutdowns_are_outages_wherever_they_sit_in_the_chain()
    {
        DatabaseUnavailableHandler.FindOutage(new NpgsqlException("Failed to connect", new SocketException((int)SocketError.ConnectionRefused))).ShouldNotBeNull();
        DatabaseUnavailableHandler.FindOutage(new InvalidOperationException("wrapped", new SocketException((int)SocketError.ConnectionReset)))
            .ShouldBe("socket ConnectionReset");
        DatabaseUnavailableHandler.FindOutage(new PostgresException("terminating connection due to administrator command", "FATAL", "FATAL", "57P01"))
            .ShouldBe("postgres 57P01");
        DatabaseUnavailableHandler.FindOutage(new PostgresException("the database system is starting up", "FATAL", "FATAL", "57P03")).ShouldBe("postgres 57P03");
        DatabaseUnavailableHandler.FindOutage(new NpgsqlException("Exception while reading from stream", new EndOfStreamException())).ShouldNotBeNull();
    }

    [Fact]
    public void a_statement_the_database_refuses_is_not_an_outage()
    {
        DatabaseUnavailableHandler.FindOutage(new PostgresException("duplicate key value", "ERROR", "ERROR", PostgresErrorCodes.UniqueViolation)).ShouldBeNull();
        DatabaseUnavailableHandler.FindOutage(new PostgresException("syntax error", "ERROR", "ERROR", PostgresErrorCodes.SyntaxError)).ShouldBeNull();
        DatabaseUnavailableHandler.FindOutage(new InvalidOperationException("a bug")).ShouldBeNull();
    }
}
