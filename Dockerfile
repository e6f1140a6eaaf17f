# The service image: build with the SDK, run on the ASP.NET runtime.
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish src/ExternalData.EventSourced.Api -c Release -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
ENV ASPNETCORE_URLS=http://+:8080
EXPOSE 8080
# The runtime image's unprivileged user: the service needs no root (it writes nothing outside its database in Production).
USER app
ENTRYPOINT ["dotnet", "ExternalData.EventSourced.Api.dll"]
