# The service image: build with the SDK, run on the ASP.NET runtime.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
# ReadyToRun: the app and its packages precompiled for the build machine's platform, so a start JITs little (ADR 0056).
RUN dotnet publish src/ExternalData.EventSourced.Api -c Release --use-current-runtime --self-contained false -p:PublishReadyToRun=true -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
ENV ASPNETCORE_URLS=http://+:8080
EXPOSE 8080
# The runtime image's unprivileged user: the service needs no root (it writes nothing outside its database in Production).
USER app
ENTRYPOINT ["dotnet", "ExternalData.EventSourced.Api.dll"]
