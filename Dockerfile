# authgate production image: multi-stage, non-root, config at /etc/authgate/gateway.yaml.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY cli ./cli
COPY gateway ./gateway
COPY policies ./policies
COPY certs ./certs
COPY console ./console
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/bin ./bin
COPY gateway.yaml /etc/authgate/gateway.yaml
USER node
EXPOSE 8080 8443 9901
# The admin listener must bind where the probe can reach it (admin.address, e.g. 0.0.0.0:9901 inside the pod).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9901/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "/app/bin/authgate.js"]
CMD ["start", "-c", "/etc/authgate/gateway.yaml"]
